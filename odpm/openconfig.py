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
leaf.  The channel's frequencies are its slot: centre -/+ half the plan's slot width.
"""

from __future__ import annotations

import math
from typing import Any

from odpm.grid import ChannelPlan
from odpm.models import Reading

MODULE = "openconfig-channel-monitor"


def channel_monitor(name: str, plan: ChannelPlan, reading: Reading) -> dict[str, Any]:
    """The ``channel-monitors`` container holding one monitor, ``name``, from ``reading``."""
    half_mhz = round(plan.spacing_ghz * 500.0)
    channels = []
    for centre_thz, power in zip(
        reading.frequency_thz.tolist(), reading.power_dbm.tolist(), strict=True
    ):
        centre_mhz = round(centre_thz * 1_000_000)
        lower, upper = str(centre_mhz - half_mhz), str(centre_mhz + half_mhz)
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
