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

Rule for values that are not measured: an active alarm whose quantity is no
longer measured -- a channel gone dark (LOS, if the channel is expected, says what
matters), a null OSNR or offset (an unresolved noise floor, a port reading that
cannot measure them), a null total power -- clears with
``reason="not_measured"`` and no value, instead of staying active forever with a
stale value nobody can check.  (Before this rule, channels restored to a high OSNR
that came back ``noise_unresolved`` kept their ``osnr_low`` for good.)  A
threshold switched off clears its alarm with ``reason="threshold_off"``.

A lost device (:meth:`AlarmEngine.device_lost`) is one device-wide alarm: the
service's watchdog raises it when no scan has arrived for ``device_lost_s``, and
the next reading the pipeline evaluates clears it.

Thresholds are global with per-channel overrides (``[alarms.channels.N]``); a field
set in an override replaces the global one for that channel, a field left unset
inherits it.  :meth:`AlarmEngine.configure` may be called from another thread while
:meth:`AlarmEngine.evaluate` runs on the acquisition worker.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, NamedTuple

import numpy as np
import numpy.typing as npt

from odpm.config import AlarmConfig
from odpm.grid import ChannelPlan
from odpm.models import AlarmEvent, AlarmKind, ClearReason, FloatArray

__all__ = ["CHANNEL_KINDS", "AlarmEngine", "ChannelCheck", "DeviationAlarm"]

BoolArray = npt.NDArray[np.bool_]

Quantity = Literal["power_dbm", "osnr_db", "offset_ghz"]


class ChannelCheck(NamedTuple):
    """One per-channel alarm kind: which quantity it watches and how.

    A "low" check is a "high" check on the negated value (``sign`` -1), so one
    comparison serves all rows; ``absolute`` compares the magnitude (offsets).
    """

    kind: AlarmKind
    sign: float
    #: The threshold's name in ``[alarms]`` (and in each channel override).
    field: str
    quantity: Quantity
    absolute: bool = False
    #: The ``[alarms]`` field holding this check's hysteresis.
    hysteresis_field: str = "hysteresis_db"


#: Every per-channel threshold alarm; adding a kind is one row here (and its
#: :class:`~odpm.models.AlarmKind` and config field).
CHANNEL_KINDS: tuple[ChannelCheck, ...] = (
    ChannelCheck(AlarmKind.POWER_LOW, -1.0, "power_low_dbm", "power_dbm"),
    ChannelCheck(AlarmKind.POWER_HIGH, 1.0, "power_high_dbm", "power_dbm"),
    ChannelCheck(AlarmKind.OSNR_LOW, -1.0, "osnr_low_db", "osnr_db"),
    ChannelCheck(
        AlarmKind.OFFSET_HIGH, 1.0, "offset_high_ghz", "offset_ghz", True, "offset_hysteresis_ghz"
    ),
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
    if limit is None or value != value:  # off, or not measured: clear
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
        self._lost = False
        self._lost_limit_s: float | None = None
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
        for check in CHANNEL_KINDS:
            name = check.field
            glob = getattr(config, name)
            row = np.full(n, np.nan if glob is None else float(glob))
            for ch, override in config.channels.items():
                if name in override.model_fields_set:
                    value = getattr(override, name)
                    row[ch - 1] = np.nan if value is None else float(value)
            rows.append(row)
        threshold = np.array(rows)
        sign = np.array([k.sign for k in CHANNEL_KINDS])[:, None]
        hyst = np.array([float(getattr(config, k.hysteresis_field)) for k in CHANNEL_KINDS])[
            :, None
        ]
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
        threshold is unset, or its value is not measured (NaN, or the channel is
        dark: see the module docstring).  A reading also clears ``device_lost``.
        """
        quantities = {"power_dbm": power_dbm, "osnr_db": osnr_db, "offset_ghz": offset_ghz}
        signed = np.empty((len(CHANNEL_KINDS), self._n))  # CHANNEL_KINDS order
        for k, check in enumerate(CHANNEL_KINDS):
            v = quantities[check.quantity]
            if check.absolute:
                np.absolute(v, out=signed[k])
            else:
                np.multiply(v, check.sign, out=signed[k])
        measured = ~np.isnan(signed)
        measured &= present
        with self._lock:
            lim = self._limits
            old = self._active
            new = np.empty_like(old)
            held = np.logical_and(old[1:], ~(signed <= lim.clear_at))
            np.logical_or(held, signed > lim.raise_at, out=new[1:])  # raise_at >= clear_at
            if not lim.all_checked:
                new[1:] &= lim.checked
            new[1:] &= measured
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
            was_lost, self._lost = self._lost, False
        if not was_lost and new_totals == old_totals and new.tobytes() == old.tobytes():
            return ()  # the steady state: no event, no per-entry work
        changed = new != old
        channels = self._plan.channel_numbers
        values = (power_dbm, *(quantities[k.quantity] for k in CHANNEL_KINDS))  # _ROWS order
        events: list[AlarmEvent] = []
        for row, i in zip(*np.nonzero(changed), strict=True):
            reason: ClearReason | None = None
            if row and not new[row, i]:
                if not lim.checked[row - 1, i]:
                    reason = ClearReason.THRESHOLD_OFF
                elif not measured[row - 1, i]:
                    reason = ClearReason.NOT_MEASURED
            events.append(
                AlarmEvent(
                    device_id,
                    time,
                    _ROWS[row],
                    int(channels[i]),
                    bool(new[row, i]),
                    None if reason is ClearReason.NOT_MEASURED else _value(values[row][i]),
                    None if row == 0 else _value(lim.threshold[row - 1, i]),
                    reason,
                )
            )
        for k, (kind, _, _) in enumerate(_TOTAL_KINDS):
            if new_totals[k] != old_totals[k]:
                t = lim.totals[k]
                total_reason: ClearReason | None = None
                if not new_totals[k]:
                    if t is None:
                        total_reason = ClearReason.THRESHOLD_OFF
                    elif total_power_dbm != total_power_dbm:
                        total_reason = ClearReason.NOT_MEASURED
                events.append(
                    AlarmEvent(
                        device_id,
                        time,
                        kind,
                        None,
                        new_totals[k],
                        _value(total_power_dbm),
                        None if t is None else t.threshold,
                        total_reason,
                    )
                )
        if was_lost:
            events.append(
                AlarmEvent(
                    device_id, time, AlarmKind.DEVICE_LOST, None, False, None, self._lost_limit_s
                )
            )
        return tuple(events)

    def device_lost(
        self, device_id: str, time: datetime, silent_s: float, limit_s: float
    ) -> AlarmEvent | None:
        """Raise ``device_lost`` (once): no scan for ``silent_s`` >= ``limit_s``.

        Called by the service's watchdog; returns the raising event, or None when
        the alarm is already active.  The next :meth:`evaluate` clears it.
        """
        with self._lock:
            if self._lost:
                return None
            self._lost = True
            self._lost_limit_s = float(limit_s)
        return AlarmEvent(
            device_id, time, AlarmKind.DEVICE_LOST, None, True, round(silent_s, 3), float(limit_s)
        )

    def restore(self, events: Iterable[AlarmEvent]) -> None:
        """Take over alarms a previous run left active (their raising events, from
        storage), so the first readings clear what is no longer true.  Without this a
        restarted service would never clear them: its engine would not know they exist,
        and storage would show them active for ever.  Unknown kinds and channels are
        ignored."""
        rows = {kind: r for r, kind in enumerate(_ROWS)}
        totals = {kind: k for k, (kind, _, _) in enumerate(_TOTAL_KINDS)}
        index = {int(ch): i for i, ch in enumerate(self._plan.channel_numbers)}
        with self._lock:
            active = self._active.copy()
            total_active = list(self._total_active)
            for e in events:
                if not e.active:
                    continue
                if e.kind is AlarmKind.DEVICE_LOST:
                    self._lost = True
                    self._lost_limit_s = e.threshold
                elif e.kind in totals:
                    total_active[totals[e.kind]] = True
                elif e.kind in rows and e.channel in index:
                    active[rows[e.kind], index[e.channel]] = True
                    if e.kind is AlarmKind.LOSS_OF_SIGNAL:
                        self._seen_lit[index[e.channel]] = True
            self._active = active
            self._total_active = tuple(total_active)

    def active(self) -> list[tuple[AlarmKind, int | None]]:
        """The alarms active now, as (kind, channel) pairs."""
        with self._lock:
            state, totals = self._active, self._total_active
        channels = self._plan.channel_numbers
        out: list[tuple[AlarmKind, int | None]] = [
            (_ROWS[r], int(channels[i])) for r, i in zip(*np.nonzero(state), strict=True)
        ]
        out += [(kind, None) for (kind, _, _), a in zip(_TOTAL_KINDS, totals, strict=True) if a]
        if self._lost:
            out.append((AlarmKind.DEVICE_LOST, None))
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
