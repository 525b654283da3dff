"""InfluxDB line protocol for the odpm schema (see ``docs/schema.md``).

Encoding is on the forwarder's hot path: an 80-channel scan is 80 ``channel``
lines, and the forwarder must keep up with what influxd can ingest (the bench
target is 0.8 x a plain POST of pre-encoded lines).  Formatting each field with
its own Python string operation would dominate, so a scan is rendered with a
single ``%`` over one cached template: the template depends only on which
values are finite and which channels are present, and that pattern is the same
scan after scan for a device, so the cache almost always hits.

Per-channel values arrive already quantised to
:data:`~odpm.storage.journal.VALUE_DECIMALS` decimals (the journal stores them
so), so the fixed-point ``%.4f`` prints each one exactly (``-12.3457``) and
InfluxDB parses back, bit for bit, the float the journal returns.  ``%.4f`` is
about twice as fast as ``repr``'s shortest-round-trip formatting, which matters
here.  Per-scan scalars are not quantised and are written with ``repr``.

Timestamps are integer microseconds (``precision=u``).  Points are idempotent in
InfluxDB (same measurement, tag set and timestamp overwrite), which is what
makes re-sending a batch after a crash harmless.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from odpm.storage.journal import VALUE_DECIMALS

MEASUREMENT_CHANNEL = "channel"
MEASUREMENT_SCAN = "scan"
MEASUREMENT_ALARM = "alarm"
MEASUREMENT_CHANNEL_1M = "channel_1m"

#: Per-channel float fields of ``channel``, in line order.
CHANNEL_FLOAT_FIELDS = ("power_dbm", "signal_power_dbm", "osnr_db", "offset_ghz")
#: Float fields of ``channel_1m``, in line order (``samples`` follows as an integer).
ROLLUP_FLOAT_FIELDS = (
    "power_dbm_mean",
    "power_dbm_min",
    "power_dbm_max",
    "osnr_db_mean",
    "osnr_db_min",
    "osnr_db_max",
)

#: Tag value of ``alarm.channel`` for device-wide alarms.
ALL_CHANNELS_TAG = "all"

#: Exact for values quantised to VALUE_DECIMALS decimals.
_VALUE_FORMAT = f"%.{VALUE_DECIMALS}f"

_TAG_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\\": "\\\\"})


def escape_tag(value: str) -> str:
    """Escape a tag value (commas, equals signs, spaces, backslashes)."""
    if not value:
        raise ValueError("tag values must not be empty (line protocol drops empty tags)")
    if "\n" in value:
        raise ValueError(f"tag value {value!r} contains a newline")
    return value.translate(_TAG_ESCAPES)


def channel_tag(channel: int) -> str:
    """Channel numbers as tags are two digits (``01``..``80``) so they sort as text."""
    return f"{int(channel):02d}"


def _float_field(name: str, value: float | None) -> str | None:
    if value is None or not math.isfinite(value):
        return None
    return f"{name}={float(value)!r}"


class ChannelLineEncoder:
    """Renders the per-channel lines of a scan (or a rollup) from arrays.

    Holds a small LRU of templates keyed by device, channel numbers and the
    finite/present masks; one instance per forwarder (no global state).
    """

    def __init__(self, max_templates: int = 512) -> None:
        self._templates: OrderedDict[tuple[object, ...], str] = OrderedDict()
        self._max = max_templates

    def _template(
        self,
        key: tuple[object, ...],
        measurement: str,
        device: str,
        channel: npt.NDArray[np.integer],
        names: Sequence[str],
        finite: npt.NDArray[np.bool_],
        suffix_fields: Sequence[str],
    ) -> str:
        tmpl = self._templates.get(key)
        if tmpl is not None:
            self._templates.move_to_end(key)
            return tmpl
        dev = escape_tag(device).replace("%", "%%")
        parts = []
        for i, ch in enumerate(channel.tolist()):
            fields = [
                f"{n}={_VALUE_FORMAT}"
                for n, ok in zip(names, finite[:, i].tolist(), strict=True)
                if ok
            ]
            fields.append(suffix_fields[i])
            parts.append(
                f"{measurement},device={dev},channel={channel_tag(ch)} "
                + ",".join(fields)
                + " \x00\n"
            )
        tmpl = "".join(parts)
        self._templates[key] = tmpl
        if len(self._templates) > self._max:
            self._templates.popitem(last=False)
        return tmpl

    def channel_lines(
        self,
        device: str,
        time_us: int,
        channel: npt.NDArray[np.integer],
        present: npt.NDArray[np.bool_],
        values: npt.NDArray[np.float64],
    ) -> str:
        """``channel`` lines: ``values`` is (4, channels) in :data:`CHANNEL_FLOAT_FIELDS` order."""
        finite = np.isfinite(values)
        key = (
            MEASUREMENT_CHANNEL,
            device,
            channel.tobytes(),
            np.packbits(finite).tobytes(),
            np.packbits(present).tobytes(),
        )
        suffix = ["present=true" if p else "present=false" for p in present.tolist()]
        tmpl = self._template(
            key, MEASUREMENT_CHANNEL, device, channel, CHANNEL_FLOAT_FIELDS, finite, suffix
        )
        # Column-major: channel 0's fields, then channel 1's ...
        flat = values.T[finite.T].tolist()
        return (tmpl % tuple(flat)).replace("\x00", str(time_us))

    def rollup_lines(
        self,
        device: str,
        minute_us: int,
        channel: npt.NDArray[np.integer],
        values: npt.NDArray[np.float64],
        samples: int,
    ) -> str:
        """``channel_1m`` lines: ``values`` is (6, channels), ROLLUP_FLOAT_FIELDS order."""
        finite = np.isfinite(values)
        key = (MEASUREMENT_CHANNEL_1M, device, channel.tobytes(), np.packbits(finite).tobytes())
        suffix = ["samples=%di"] * channel.size
        tmpl = self._template(
            key, MEASUREMENT_CHANNEL_1M, device, channel, ROLLUP_FLOAT_FIELDS, finite, suffix
        )
        # Interleave each channel's floats with its samples count.
        cols = finite.sum(axis=0)
        flat = values.T[finite.T].tolist()
        out: list[float | int] = []
        pos = 0
        for n in cols.tolist():
            out.extend(flat[pos : pos + n])
            out.append(samples)
            pos += n
        return (tmpl % tuple(out)).replace("\x00", str(minute_us))


def scan_line(
    device: str,
    mode: str,
    time_us: int,
    *,
    total_power_dbm: float,
    lit_channels: int,
    tilt_db: float,
    flatness_db: float,
    min_osnr_db: float,
    temperature_c: float | None,
) -> str:
    """The ``scan`` line; ``lit_channels`` is always present, so the line always has a field."""
    fields = [
        f
        for f in (
            _float_field("total_power_dbm", total_power_dbm),
            f"lit_channels={int(lit_channels)}i",
            _float_field("tilt_db", tilt_db),
            _float_field("flatness_db", flatness_db),
            _float_field("min_osnr_db", min_osnr_db),
            _float_field("temperature_c", temperature_c),
        )
        if f is not None
    ]
    return (
        f"{MEASUREMENT_SCAN},device={escape_tag(device)},mode={escape_tag(mode)} "
        f"{','.join(fields)} {time_us}\n"
    )


def alarm_line(
    device: str,
    time_us: int,
    *,
    kind: str,
    channel: int | None,
    active: bool,
    value: float | None,
    threshold: float | None,
) -> str:
    """An ``alarm`` line; ``channel`` None (device-wide) is tagged ``all``."""
    ch = ALL_CHANNELS_TAG if channel is None else channel_tag(channel)
    fields = [
        f
        for f in (
            "active=true" if active else "active=false",
            _float_field("value", value),
            _float_field("threshold", threshold),
        )
        if f is not None
    ]
    return (
        f"{MEASUREMENT_ALARM},device={escape_tag(device)},channel={ch},kind={escape_tag(kind)} "
        f"{','.join(fields)} {time_us}\n"
    )
