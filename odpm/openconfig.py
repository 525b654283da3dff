"""A device's latest reading as ``openconfig-channel-monitor`` state (v0.4.1).

Network tooling that already speaks the OpenConfig channel-monitor model can read odpm
through ``GET /api/v1/devices/{id}/openconfig``.  The tree is
``channel-monitors/channel-monitor[name]/channels/channel[lower-frequency][upper-frequency]
/state/{lower-frequency, upper-frequency, power}``, JSON-encoded per RFC 7951: the top node
is module-qualified, and ``uint64`` frequencies (MHz) and ``decimal64`` powers (dBm, two
fraction digits) are JSON strings, as that RFC requires for 64-bit types.

Power is the power *integrated* over the channel, from its lower to its upper frequency
(the slot power odpm reports as ``power_dbm``), which is how the model's release states it
(openconfig/public#1066 notes that "average" and "integrated" are both found in the wild).
A channel whose power is below the detector floor (a port reading of NaN) has no ``power``
leaf.  The channel's frequencies are its own slot: centre -/+ half its width, so a
flexible-grid plan (ITU-T G.694.1) gives each channel its own lower and upper edge, and
the power is integrated over that slot (in port mode, the ports the slot covers).
"""

from __future__ import annotations

import math
from typing import Any

from odpm.grid import ChannelPlan
from odpm.models import Reading

MODULE = "openconfig-channel-monitor"


def channel_monitor(name: str, plan: ChannelPlan, reading: Reading) -> dict[str, Any]:
    """The ``channel-monitors`` container holding one monitor, ``name``, from ``reading``."""
    lower_mhz, upper_mhz = plan.edges_mhz
    if lower_mhz.size != reading.power_dbm.size:
        raise ValueError(
            f"the reading has {reading.power_dbm.size} channels but the plan {lower_mhz.size}"
        )
    channels = []
    for lo, hi, power in zip(
        lower_mhz.tolist(), upper_mhz.tolist(), reading.power_dbm.tolist(), strict=True
    ):
        lower, upper = str(lo), str(hi)
        state: dict[str, str] = {"lower-frequency": lower, "upper-frequency": upper}
        if not math.isnan(power):
            state["power"] = f"{power:.2f}"
        channels.append({"lower-frequency": lower, "upper-frequency": upper, "state": state})
    return {
        f"{MODULE}:channel-monitors": {
            "channel-monitor": [
                {
                    "name": name,
                    "config": {"name": name},
                    "state": {"name": name},
                    "channels": {"channel": channels},
                }
            ]
        }
    }
