"""Alarms with hysteresis, evaluated on every reading, vectorised over channels.

Each alarm is a boolean per channel (or per device for total power).  A "low"
alarm raises when the value falls below its threshold and clears only once the
value is back at or above threshold + hysteresis; a "high" alarm mirrors that.
Inside the hysteresis band nothing changes, so a value wandering around the
threshold raises once and clears once instead of chattering.  Events are emitted
only when a state changes, with the value and the threshold that decided it.

Loss of signal (LOS) is per channel: a channel that should be lit is dark.  "Should
be lit" means listed in ``expected_channels``, or, when that list is empty, seen
lit at least once since the pipeline started.

Rules for values that do not exist:

* a channel that is not present clears its power/OSNR/offset alarms (LOS, if the
  channel is expected, says what matters);
* a present channel whose value is NaN (no OSNR in a port reading, an unresolved
  noise floor) keeps its state: no new information, no change.

Thresholds are global with per-channel overrides (``[alarms.channels.N]``); a field
set in an override replaces the global one for that channel, a field left unset
inherits it.  :meth:`AlarmEngine.configure` may be called from another thread while
:meth:`AlarmEngine.evaluate` runs on the acquisition worker.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from odpm.config import AlarmConfig
from odpm.grid import ChannelPlan
from odpm.models import AlarmEvent, AlarmKind, FloatArray

__all__ = ["CHANNEL_KINDS", "AlarmEngine", "DeviationAlarm"]

BoolArray = npt.NDArray[np.bool_]

#: Rows of the per-channel state: (kind, sign, config field).  A "low" check is a
#: "high" check on the negated value (sign -1), so one comparison serves all rows.
CHANNEL_KINDS: tuple[tuple[AlarmKind, float, str], ...] = (
    (AlarmKind.POWER_LOW, -1.0, "power_low_dbm"),
    (AlarmKind.POWER_HIGH, 1.0, "power_high_dbm"),
    (AlarmKind.OSNR_LOW, -1.0, "osnr_low_db"),
    (AlarmKind.OFFSET_HIGH, 1.0, "offset_high_ghz"),
)
_TOTAL_KINDS: tuple[tuple[AlarmKind, float, str], ...] = (
    (AlarmKind.TOTAL_POWER_LOW, -1.0, "total_power_low_dbm"),
    (AlarmKind.TOTAL_POWER_HIGH, 1.0, "total_power_high_dbm"),
)


#: Rows of the engine's state array: loss of signal, then :data:`CHANNEL_KINDS`.
_ROWS: tuple[AlarmKind, ...] = (AlarmKind.LOSS_OF_SIGNAL, *(k[0] for k in CHANNEL_KINDS))


class _TotalLimit(NamedTuple):
    """A device-wide threshold in the "high" form of :class:`_Limits`."""

    threshold: float
    sign: float
    raise_at: float
    clear_at: float


@dataclass(frozen=True, slots=True)
class _Limits:
    """One alarm configuration, precomputed once per :meth:`AlarmEngine.configure`
    so that a scan does no configuration work.

    Channel rows follow :data:`CHANNEL_KINDS` in "high" form: raise when
    ``sign x value > raise_at``, clear when ``sign x value <= clear_at``.
    """

    threshold: FloatArray  # (K, C) as configured, NaN = not checked
    raise_at: FloatArray  # (K, C)
    clear_at: FloatArray  # (K, C)
    checked: BoolArray  # (K, C)
    all_checked: bool
    #: Per :data:`_TOTAL_KINDS` entry; None = not checked.
    totals: tuple[_TotalLimit | None, ...]
    #: Channels that must be lit; None means "seen lit since start".
    expected: BoolArray | None


def _step_total(active: bool, value: float, limit: _TotalLimit | None) -> bool:
    """The hysteresis rule of :meth:`AlarmEngine.evaluate` for one device-wide alarm,
    on plain floats (two values do not pay for numpy calls)."""
    if limit is None:
        return False
    signed = limit.sign * value
    if active:
        return not signed <= limit.clear_at
    return signed > limit.raise_at


class AlarmEngine:
    """Alarm state of one device's channels (see the module docstring).

    The channel state is one boolean array, a row per kind of :data:`_ROWS` by
    channel, so a scan costs a fixed handful of whole-array numpy operations (the
    port-reading path has a 50 us budget; each numpy call is about a microsecond),
    and events are built only for the entries that changed.
    """

    def __init__(self, plan: ChannelPlan, config: AlarmConfig) -> None:
        self._plan = plan
        self._n = plan.count
        self._lock = threading.Lock()
        self._active = np.zeros((len(_ROWS), self._n), dtype=bool)
        self._total_active = (False,) * len(_TOTAL_KINDS)
        self._seen_lit = np.zeros(self._n, dtype=bool)
        self.configure(config)

    @property
    def config(self) -> AlarmConfig:
        return self._config

    def configure(self, config: AlarmConfig) -> None:
        """Install thresholds; ValueError names a channel outside the plan."""
        n = self._n
        for ch in (*config.expected_channels, *config.channels):
            if not 1 <= ch <= n:
                raise ValueError(f"alarm config names channel {ch}; the plan has 1..{n}")
        rows = []
        for _, _, name in CHANNEL_KINDS:
            glob = getattr(config, name)
            row = np.full(n, np.nan if glob is None else float(glob))
            for ch, override in config.channels.items():
                if name in override.model_fields_set:
                    value = getattr(override, name)
                    row[ch - 1] = np.nan if value is None else float(value)
            rows.append(row)
        threshold = np.array(rows)
        sign = np.array([k[1] for k in CHANNEL_KINDS])[:, None]
        hyst = np.array(
            [
                config.offset_hysteresis_ghz
                if k[0] is AlarmKind.OFFSET_HIGH
                else config.hysteresis_db
                for k in CHANNEL_KINDS
            ]
        )[:, None]
        raise_at = sign * threshold
        totals: list[_TotalLimit | None] = []
        for _, s, name in _TOTAL_KINDS:
            value = getattr(config, name)
            if value is None:
                totals.append(None)
            else:
                at = s * float(value)
                totals.append(_TotalLimit(float(value), s, at, at - config.hysteresis_db))
        expected = None
        if config.expected_channels:
            expected = np.zeros(n, dtype=bool)
            expected[np.asarray(config.expected_channels) - 1] = True
        limits = _Limits(
            threshold=threshold,
            raise_at=raise_at,
            clear_at=raise_at - hyst,
            checked=~np.isnan(threshold),
            all_checked=not np.isnan(threshold).any(),
            totals=tuple(totals),
            expected=expected,
        )
        with self._lock:
            self._config = config
            self._limits = limits

    def evaluate(
        self,
        device_id: str,
        time: datetime,
        *,
        present: BoolArray,
        power_dbm: FloatArray,
        osnr_db: FloatArray,
        offset_ghz: FloatArray,
        total_power_dbm: float,
    ) -> tuple[AlarmEvent, ...]:
        """Update the state with one reading; the events it raised or cleared.

        A channel alarm that is active stays so unless its value clears it; one
        that is not raises if its value fires it; then it is forced off where its
        threshold is unset or the channel is dark.  NaN compares False both ways,
        so it keeps the state.
        """
        signed = np.empty((len(CHANNEL_KINDS), self._n))  # CHANNEL_KINDS order
        np.negative(power_dbm, out=signed[0])
        signed[1] = power_dbm
        np.negative(osnr_db, out=signed[2])
        np.absolute(offset_ghz, out=signed[3])
        with self._lock:
            lim = self._limits
            old = self._active
            new = np.empty_like(old)
            held = np.logical_and(old[1:], ~(signed <= lim.clear_at))
            np.logical_or(held, signed > lim.raise_at, out=new[1:])  # raise_at >= clear_at
            if not lim.all_checked:
                new[1:] &= lim.checked
            new[1:] &= present
            if lim.expected is None:
                self._seen_lit |= present
                expected = self._seen_lit
            else:
                expected = lim.expected
            np.logical_and(expected, ~present, out=new[0])
            self._active = new
            old_totals = self._total_active
            new_totals = tuple(
                [
                    _step_total(a, total_power_dbm, t)
                    for a, t in zip(old_totals, lim.totals, strict=True)
                ]
            )
            self._total_active = new_totals
        if new_totals == old_totals and new.tobytes() == old.tobytes():
            return ()  # the steady state: no event, no per-entry work
        changed = new != old
        channels = self._plan.channel_numbers
        values = (power_dbm, power_dbm, power_dbm, osnr_db, offset_ghz)  # _ROWS order
        events: list[AlarmEvent] = []
        for row, i in zip(*np.nonzero(changed), strict=True):
            events.append(
                AlarmEvent(
                    device_id,
                    time,
                    _ROWS[row],
                    int(channels[i]),
                    bool(new[row, i]),
                    _value(values[row][i]),
                    None if row == 0 else _value(lim.threshold[row - 1, i]),
                )
            )
        for k, (kind, _, _) in enumerate(_TOTAL_KINDS):
            if new_totals[k] != old_totals[k]:
                t = lim.totals[k]
                events.append(
                    AlarmEvent(
                        device_id,
                        time,
                        kind,
                        None,
                        new_totals[k],
                        _value(total_power_dbm),
                        None if t is None else t.threshold,
                    )
                )
        return tuple(events)

    def active(self) -> list[tuple[AlarmKind, int | None]]:
        """The alarms active now, as (kind, channel) pairs."""
        with self._lock:
            state, totals = self._active, self._total_active
        channels = self._plan.channel_numbers
        out: list[tuple[AlarmKind, int | None]] = [
            (_ROWS[r], int(channels[i])) for r, i in zip(*np.nonzero(state), strict=True)
        ]
        out += [(kind, None) for (kind, _, _), a in zip(_TOTAL_KINDS, totals, strict=True) if a]
        return out


def _value(v: float | np.floating[npt.NBitBase]) -> float | None:
    f = float(v)
    return None if f != f else f


class DeviationAlarm:
    """``deviation``: a channel whose power differs from the device's default reference
    trace by more than ``deviation_db`` (either way), with the hysteresis of the others.

    The reference powers are the reference trace analysed by the same pipeline
    (:meth:`set_reference`).  Raises when ``|power - reference| > deviation_db``,
    clears once it is ``<= deviation_db - hysteresis_db``; NaN (no value, or no
    reference value for that channel) keeps the state; no threshold or no
    reference clears every raised one.  The event's value is the signed
    difference (dB).  Thread-safe like :class:`AlarmEngine`.
    """

    def __init__(self, plan: ChannelPlan) -> None:
        self._plan = plan
        self._lock = threading.Lock()
        self._active = np.zeros(plan.count, dtype=bool)
        self._reference: FloatArray | None = None

    def set_reference(self, power_dbm: FloatArray | None) -> None:
        if power_dbm is not None and np.shape(power_dbm) != (self._plan.count,):
            raise ValueError(
                f"reference has {np.size(power_dbm)} channels, plan {self._plan.count}"
            )
        with self._lock:
            self._reference = None if power_dbm is None else np.asarray(power_dbm, np.float64)

    def evaluate(
        self, device_id: str, time: datetime, power_dbm: FloatArray, config: AlarmConfig
    ) -> tuple[AlarmEvent, ...]:
        with self._lock:
            ref, old = self._reference, self._active
            if ref is None or config.deviation_db is None:
                new = np.zeros_like(old)
                delta = np.full(old.shape, np.nan)
            else:
                delta = np.asarray(power_dbm, dtype=np.float64) - ref
                size = np.abs(delta)
                limit = config.deviation_db
                held = old & ~(size <= limit - config.hysteresis_db)
                new = held | (size > limit)
            self._active = new
        if not (new != old).any():
            return ()
        channels = self._plan.channel_numbers
        return tuple(
            AlarmEvent(
                device_id,
                time,
                AlarmKind.DEVIATION,
                int(channels[i]),
                bool(new[i]),
                _value(delta[i]),
                config.deviation_db,
            )
            for i in np.flatnonzero(new != old)
        )
