"""The data that flows between stages: raw scans in, readings out.

Transport -> driver -> acquisition worker produce :class:`PortScan` and
:class:`TraceScan`; the pipeline turns either into a :class:`Reading`; storage,
the latest cache, live streams and the API consume readings.  Each stage only
knows the types of the stage before it.

Per-channel values are numpy arrays (one element per channel, NaN where a value
does not exist) so a reading of 80 channels costs a few arrays rather than 80
objects; :meth:`Reading.to_dict` turns NaN into ``null`` for people.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum, StrEnum
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
Mode = Literal["power", "trace", "stream"]


@dataclass(frozen=True, slots=True)
class PortScan:
    """One reading of every photodiode port, as the device reported it.

    ``power_dbm`` has one value per port, NaN below the detection floor.
    ``port_frequency_thz`` is the centre of each port (from the device's grid),
    so the pipeline can map channels without asking the device again.
    """

    device_id: str
    time: datetime
    power_dbm: FloatArray
    port_frequency_thz: FloatArray
    temperature_c: float | None = None
    #: "power" for MEAS:POW? polling, "stream" for binary stream frames.
    mode: Mode = "power"


@dataclass(frozen=True, slots=True)
class InstrumentAnalysis:
    """An instrument's own per-channel analysis (a bench OSA's WDM table), kept beside odpm's.

    One entry per peak the instrument found: vacuum frequency, level and OSNR as the
    instrument computed them (its own noise algorithm and bandwidth setting).
    """

    source: str
    frequency_thz: FloatArray
    power_dbm: FloatArray
    osnr_db: FloatArray


@dataclass(frozen=True, slots=True)
class TraceScan:
    """A scanned spectrum: ``power_dbm[k]`` measured at ``frequency_thz[k]``.

    Each point is the power through a filter of noise-equivalent bandwidth
    ``rbw_ghz`` (what OSA manuals call the resolution bandwidth).
    """

    device_id: str
    time: datetime
    frequency_thz: FloatArray
    power_dbm: npt.NDArray[np.floating[Any]]
    rbw_ghz: float
    temperature_c: float | None = None
    mode: Mode = "trace"
    #: Optional second traces on the same axis (dBm): the channels switched off
    #: (signal-off method), or the same channels at high OSNR (reference method).
    noise_power_dbm: npt.NDArray[np.floating[Any]] | None = None
    reference_power_dbm: npt.NDArray[np.floating[Any]] | None = None
    #: The instrument's own analysis of this sweep, when asked for (``instrument_analysis``).
    instrument: InstrumentAnalysis | None = None


RawScan = PortScan | TraceScan


class Quality(IntEnum):
    """How far a channel's values can be trusted.

    Stored as a small integer; shown to people by :attr:`label`.
    """

    OK = 0
    #: Nothing detected in the slot; signal power, OSNR and offset are null.
    DARK = 1
    #: The signal spectrum reaches the inter-channel midpoints, so the noise
    #: floor there is not resolvable and OSNR by interpolation would lie.
    NOISE_UNRESOLVED = 2
    #: The mode cannot measure OSNR or offset at all (port readings).
    POWER_ONLY = 3

    @property
    def label(self) -> str:
        return self.name.lower()


class OsnrMethod(IntEnum):
    """Which method produced a channel's OSNR (stored as a small integer)."""

    #: No OSNR (dark, port reading, or no method was credible).
    NONE = 0
    #: IEC 61280-2-9: noise interpolated from the inter-channel midpoints.
    INTERPOLATION = 1
    #: Noise read beside the channel inside its own slot.
    SHOULDER = 2
    #: Raised-cosine x RBW model plus a linear noise pedestal, least squares.
    FIT = 3
    #: The channel's shape from a high-OSNR reference trace, gain x shape + noise.
    REFERENCE = 4
    #: Noise read from a second trace with the channels switched off.
    SIGNAL_OFF = 5

    @property
    def label(self) -> str | None:
        return None if self is OsnrMethod.NONE else self.name.lower()


class AlarmKind(StrEnum):
    LOSS_OF_SIGNAL = "los"
    POWER_LOW = "power_low"
    POWER_HIGH = "power_high"
    OSNR_LOW = "osnr_low"
    OFFSET_HIGH = "offset_high"
    TOTAL_POWER_LOW = "total_power_low"
    TOTAL_POWER_HIGH = "total_power_high"
    #: A channel's power this far from the device's default reference trace.
    DEVIATION = "deviation"
    #: Device-wide: no scan from the device for ``alarms.device_lost_s`` (unreachable, or
    #: connected but delivering nothing).
    DEVICE_LOST = "device_lost"


class ClearReason(StrEnum):
    """Why an alarm cleared, when it is not the plain "value back inside its limit"."""

    #: The quantity the alarm watches is no longer measured (a null OSNR or offset, a
    #: mode that cannot measure it, a channel gone dark that ``los`` now covers): the
    #: alarm clears rather than keep a stale value.
    NOT_MEASURED = "not_measured"
    #: The alarm's threshold was switched off (set to null) while it was active.
    THRESHOLD_OFF = "threshold_off"


@dataclass(frozen=True, slots=True)
class AlarmEvent:
    """An alarm raised (``active=True``) or cleared; emitted only on change.

    ``channel`` is None for device-wide alarms (total power, device lost).
    ``reason`` is set only on a clear that is not a value returning inside its
    limit (see :class:`ClearReason`); None otherwise.
    """

    device_id: str
    time: datetime
    kind: AlarmKind
    channel: int | None
    active: bool
    value: float | None
    threshold: float | None
    reason: ClearReason | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "device": self.device_id,
            "time": self.time.isoformat(),
            "kind": self.kind.value,
            "channel": self.channel,
            "active": self.active,
            "value": _none_if_nan(self.value),
            "threshold": self.threshold,
            "reason": None if self.reason is None else self.reason.value,
        }


def _none_if_nan(v: float | None) -> float | None:
    if v is None or math.isnan(v):
        return None
    return float(v)


def _round_or_none(v: float, ndigits: int) -> float | None:
    return None if math.isnan(v) else round(float(v), ndigits)


@dataclass(frozen=True, slots=True)
class Reading:
    """The analysed result of one scan.

    Arrays are per channel, index ``i`` = channel ``channel[i]``; NaN means the
    value does not exist (a dark channel, or a mode that cannot measure it).
    Scalars are NaN likewise (``min_osnr_db`` of a port reading).
    """

    device_id: str
    time: datetime
    mode: Mode
    channel: npt.NDArray[np.int64]
    frequency_thz: FloatArray
    present: npt.NDArray[np.bool_]
    power_dbm: FloatArray
    signal_power_dbm: FloatArray
    osnr_db: FloatArray
    offset_ghz: FloatArray
    quality: npt.NDArray[np.uint8]
    total_power_dbm: float
    lit_channels: int
    tilt_db: float
    flatness_db: float
    min_osnr_db: float
    temperature_c: float | None = None
    alarms: tuple[AlarmEvent, ...] = field(default_factory=tuple)
    #: :class:`OsnrMethod` per channel; None for readings that cannot have an OSNR.
    osnr_method: npt.NDArray[np.uint8] | None = None
    #: One-sigma uncertainty of each OSNR in dB (NaN where there is no OSNR).
    osnr_uncertainty_db: FloatArray | None = None
    #: Each channel's slot width in GHz (ITU-T G.694.1: a flex plan's channels differ);
    #: None only for readings rebuilt without their plan.
    width_ghz: FloatArray | None = None

    @property
    def channel_count(self) -> int:
        return int(self.channel.size)

    def channels_as_dicts(self) -> list[dict[str, Any]]:
        """Per-channel records with null for missing values (JSON-ready)."""
        labels = [Quality(int(q)).label for q in self.quality]
        cols = {
            "power_dbm": self.power_dbm,
            "signal_power_dbm": self.signal_power_dbm,
            "osnr_db": self.osnr_db,
            "offset_ghz": self.offset_ghz,
        }
        rounded = {k: np.round(v, 3).tolist() for k, v in cols.items()}
        n = self.channel.size
        codes = self.osnr_method if self.osnr_method is not None else np.zeros(n, np.uint8)
        methods = [OsnrMethod(int(m)).label for m in codes]
        u = self.osnr_uncertainty_db
        unc = np.round(u, 3).tolist() if u is not None else [math.nan] * n
        w = self.width_ghz
        widths = np.round(w, 4).tolist() if w is not None else [math.nan] * n
        out = []
        for i in range(self.channel.size):
            row: dict[str, Any] = {
                "channel": int(self.channel[i]),
                "frequency_thz": round(float(self.frequency_thz[i]), 6),
                "width_ghz": None if math.isnan(widths[i]) else widths[i],
                "present": bool(self.present[i]),
            }
            for k, vals in rounded.items():
                v = vals[i]
                row[k] = None if math.isnan(v) else v
            row["quality"] = labels[i]
            row["osnr_method"] = methods[i]
            row["osnr_uncertainty_db"] = None if math.isnan(unc[i]) else unc[i]
            out.append(row)
        return out

    def summary_dict(self) -> dict[str, Any]:
        """Per-scan values, JSON-ready (null for values that do not exist)."""
        return {
            "total_power_dbm": _round_or_none(self.total_power_dbm, 3),
            "lit_channels": int(self.lit_channels),
            "tilt_db": _round_or_none(self.tilt_db, 3),
            "flatness_db": _round_or_none(self.flatness_db, 3),
            "min_osnr_db": _round_or_none(self.min_osnr_db, 3),
        }

    def to_dict(self) -> dict[str, Any]:
        """The analysis JSON shape shared by ``odpm analyze``, ``odpm scan`` and the API."""
        return {
            "device": self.device_id,
            "time": self.time.isoformat(),
            "mode": self.mode,
            "temperature_c": self.temperature_c,
            "channels": self.channels_as_dicts(),
            **self.summary_dict(),
            "alarms": [a.to_dict() for a in self.alarms],
        }
