"""InfluxDB line protocol for the odpm schema (see ``docs/schema.md``).

Encoding is on the forwarder's hot path: an 80-channel scan is 80 ``channel``
lines, and the forwarder must keep up with what influxd can ingest (the bench
target is 0.8 x a plain POST of pre-encoded lines) while influxd needs the same
two cores.  Formatting each field with its own Python string operation would
dominate, so :class:`ChannelLineEncoder` renders a whole batch of scans at once:
numpy turns every value into indices into tables of pre-rendered text, and one
``str.join`` writes the batch (about 0.6 us per line, against 1.8 us for the
earlier one-``%``-template-per-scan encoder; ``bench/storage.py`` prints it).

Per-channel values arrive already quantised to
:data:`~odpm.storage.journal.VALUE_DECIMALS` decimals (the journal stores them
so), i.e. they are integers in units of 1e-4, so their text is exactly
``%.4f`` (``-12.3457``) and InfluxDB parses back, bit for bit, the float the
journal returns.  Per-scan scalars are not quantised and are written with
``repr``.

Timestamps are integer microseconds (``precision=u``).  Points are idempotent in
InfluxDB (same measurement, tag set and timestamp overwrite), which is what
makes re-sending a batch after a crash harmless.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from odpm.storage.journal import CHANNEL_VALUE_COLUMNS, ROLLUP_VALUE_COLUMNS, VALUE_DECIMALS

MEASUREMENT_CHANNEL = "channel"
MEASUREMENT_SCAN = "scan"
MEASUREMENT_ALARM = "alarm"
MEASUREMENT_CHANNEL_1M = "channel_1m"

#: Per-channel float fields of ``channel``, in line order.
CHANNEL_FLOAT_FIELDS = CHANNEL_VALUE_COLUMNS
#: Float fields of ``channel_1m``, in line order (``samples`` follows as an integer).
ROLLUP_FLOAT_FIELDS = ROLLUP_VALUE_COLUMNS

#: Tag value of ``alarm.channel`` for device-wide alarms.
ALL_CHANNELS_TAG = "all"

#: Exact for values quantised to VALUE_DECIMALS decimals.
_VALUE_FORMAT = f"%.{VALUE_DECIMALS}f"

_TAG_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\\": "\\\\"})


def _escape_string_field(value: str) -> str:
    """A string field value's escaping (line protocol: backslash and double quote)."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


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


class ChannelBlock(NamedTuple):
    """One scan's (or rollup's) channel lines to render, and text to follow them.

    ``values`` is (fields, channels); ``suffix`` holds each line's last field
    with its trailing space (``present=true `` / ``samples=42i ``); ``tail`` is
    written right after the block's last line (the scan line and alarm lines),
    so a whole batch renders in journal order with one join.
    """

    device: str
    time_us: int
    channel: npt.NDArray[np.integer]
    values: npt.NDArray[np.float64]
    suffix: npt.NDArray[np.object_]
    tail: str = ""


class ChannelLineEncoder:
    """Renders per-channel lines for a whole batch of scans at once, vectorised.

    Every float is a quantised value (see the module docstring), so it is an
    integer number of 10^-VALUE_DECIMALS: its text is looked up, never
    formatted.  Each value becomes two table lookups, ``name=<integer part>``
    and ``.<fraction>,``, done for the whole batch with numpy fancy indexing;
    with the cached tag prefix per (device, channel), the suffix and the
    timestamp, the batch is one object array of string pieces and one
    ``str.join``.  Absent values index an empty string.  Values with an
    integer part beyond the tables (never for dB/dBm/GHz) are formatted with
    ``%.{VALUE_DECIMALS}f`` one by one.

    One instance per forwarder (tables and the prefix cache are per instance:
    no global state); ``max_templates`` bounds the prefix cache.
    """

    #: Integer parts covered by the lookup tables: |value| < this.
    INTEGER_RANGE = 1000

    def __init__(self, max_templates: int = 512) -> None:
        self._prefixes: OrderedDict[tuple[str, str, bytes], npt.NDArray[np.object_]] = OrderedDict()
        self._max = max_templates
        r = self.INTEGER_RANGE
        scale = 10**VALUE_DECIMALS
        # Fractions ".0000," .. ".9999," and, at index `scale`, "" for absent values.
        self._fractions = _object_array([f".{k:0{VALUE_DECIMALS}d}," for k in range(scale)] + [""])
        self._names: dict[str, npt.NDArray[np.object_]] = {}
        # Integer parts: [0, r) positive, [r, 2r) negative (so -0.5 -> "-0"), 2r absent.
        ints = [str(i) for i in range(r)] + [f"-{i}" for i in range(r)]
        for name in (*CHANNEL_FLOAT_FIELDS, *ROLLUP_FLOAT_FIELDS):
            self._names[name] = _object_array([f"{name}={i}" for i in ints] + [""])
        self._present = _object_array(["present=false ", "present=true "])

    def _prefix(
        self, measurement: str, device: str, channel: npt.NDArray[np.integer]
    ) -> npt.NDArray[np.object_]:
        key = (measurement, device, channel.tobytes())
        got = self._prefixes.get(key)
        if got is not None:
            self._prefixes.move_to_end(key)
            return got
        dev = escape_tag(device)
        got = _object_array(
            [f"{measurement},device={dev},channel={channel_tag(c)} " for c in channel.tolist()]
        )
        self._prefixes[key] = got
        if len(self._prefixes) > self._max:
            self._prefixes.popitem(last=False)
        return got

    def render(self, measurement: str, names: Sequence[str], blocks: Sequence[ChannelBlock]) -> str:
        """The lines of every block, in order, each block followed by its tail."""
        blocks = list(blocks)
        sizes = [b.channel.size for b in blocks]
        lines = sum(sizes)
        if lines == 0:
            return "".join(b.tail for b in blocks)
        nf = len(names)
        for b in blocks:
            if b.values.shape != (nf, b.channel.size) or b.suffix.shape != (b.channel.size,):
                raise ValueError(
                    f"{measurement} block of {b.device}: values {b.values.shape} and suffix "
                    f"{b.suffix.shape} do not match {nf} fields x {b.channel.size} channels"
                )
        values = (
            np.concatenate([b.values for b in blocks], axis=1)
            if len(blocks) > 1
            else (blocks[0].values)
        )
        finite = np.isfinite(values)
        r = self.INTEGER_RANGE
        scale = 10**VALUE_DECIMALS
        with np.errstate(invalid="ignore"):
            big = finite & (np.abs(values) >= r)
        table = finite & ~big
        fixed = np.rint(np.abs(np.where(table, values, 0.0)) * scale).astype(np.int64)
        whole, frac = np.divmod(fixed, scale)
        whole += np.signbit(values) * r
        whole[~table] = 2 * r
        frac[~table] = scale

        pieces = np.empty((lines, 2 * nf + 3), dtype=object)
        pieces[:, 0] = np.concatenate(
            [self._prefix(measurement, b.device, b.channel) for b in blocks]
        )
        for j, name in enumerate(names):
            pieces[:, 1 + 2 * j] = self._names[name][whole[j]]
            pieces[:, 2 + 2 * j] = self._fractions[frac[j]]
        if big.any():
            for j, i in zip(*np.nonzero(big), strict=True):
                pieces[i, 1 + 2 * j] = f"{names[j]}={_VALUE_FORMAT % values[j, i]}"
                pieces[i, 2 + 2 * j] = ","
        pieces[:, 2 * nf + 1] = np.concatenate([b.suffix for b in blocks])
        stamps = _object_array([f"{b.time_us}\n" for b in blocks])
        pieces[:, 2 * nf + 2] = np.repeat(stamps, sizes)
        # Tails go after their block's last line; a block without channels has
        # no line of its own, so its tail follows the previous block's.
        head = ""
        last = -1
        for b, size in zip(blocks, sizes, strict=True):
            last += size
            if not b.tail:
                continue
            if last < 0:
                head += b.tail
            elif size:
                pieces[last, 2 * nf + 2] = f"{b.time_us}\n{b.tail}"
            else:
                pieces[last, 2 * nf + 2] += b.tail
        return head + "".join(pieces.ravel().tolist())

    def present_suffix(self, present: npt.NDArray[np.bool_]) -> npt.NDArray[np.object_]:
        """The ``present=...`` field (last on every ``channel`` line) per channel."""
        return self._present[np.asarray(present, dtype=np.intp)]

    def channel_lines(
        self,
        device: str,
        time_us: int,
        channel: npt.NDArray[np.integer],
        present: npt.NDArray[np.bool_],
        values: npt.NDArray[np.float64],
    ) -> str:
        """``channel`` lines: ``values`` is (4, channels) in :data:`CHANNEL_FLOAT_FIELDS` order."""
        block = ChannelBlock(device, time_us, channel, values, self.present_suffix(present))
        return self.render(MEASUREMENT_CHANNEL, CHANNEL_FLOAT_FIELDS, [block])

    def rollup_lines(
        self,
        device: str,
        minute_us: int,
        channel: npt.NDArray[np.integer],
        values: npt.NDArray[np.float64],
        samples: int,
    ) -> str:
        """``channel_1m`` lines: ``values`` is (6, channels), ROLLUP_FLOAT_FIELDS order."""
        suffix = np.full(channel.size, f"samples={int(samples)}i ", dtype=object)
        block = ChannelBlock(device, minute_us, channel, values, suffix)
        return self.render(MEASUREMENT_CHANNEL_1M, ROLLUP_FLOAT_FIELDS, [block])


def _object_array(items: Sequence[str]) -> npt.NDArray[np.object_]:
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


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
    reason: str | None = None,
) -> str:
    """An ``alarm`` line; ``channel`` None (device-wide) is tagged ``all``; ``reason``
    (why a clear happened, e.g. ``not_measured``) is a string field, absent when None."""
    ch = ALL_CHANNELS_TAG if channel is None else channel_tag(channel)
    fields = [
        f
        for f in (
            "active=true" if active else "active=false",
            _float_field("value", value),
            _float_field("threshold", threshold),
            None if reason is None else f'reason="{_escape_string_field(reason)}"',
        )
        if f is not None
    ]
    return (
        f"{MEASUREMENT_ALARM},device={escape_tag(device)},channel={ch},kind={escape_tag(kind)} "
        f"{','.join(fields)} {time_us}\n"
    )
