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

import numpy as np
import numpy.typing as npt

from odpm.config import AlarmConfig
from odpm.grid import ChannelPlan
from odpm.models import AlarmEvent, AlarmKind, FloatArray

__all__ = ["CHANNEL_KINDS", "AlarmEngine"]

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


@dataclass(frozen=True, slots=True)
class _Limits:
    """Thresholds in "high" form: raise when s*v > raise_at, clear when s*v <= clear_at."""

    threshold: FloatArray  # as configured, NaN = not checked
    raise_at: FloatArray
    clear_at: FloatArray
    checked: BoolArray


def _limits(threshold: FloatArray, sign: FloatArray, hysteresis: FloatArray) -> _Limits:
    raise_at = sign * threshold
    return _Limits(threshold, raise_at, raise_at - hysteresis, ~np.isnan(threshold))


def _step(active: BoolArray, signed_value: FloatArray, lim: _Limits) -> BoolArray:
    """Next state of hysteresis alarms.  NaN values keep the state (comparisons
    with NaN are False, so neither the raise nor the clear condition holds)."""
    clear = signed_value <= lim.clear_at
    fire = signed_value > lim.raise_at
    return np.where(active, ~clear, fire) & lim.checked


class AlarmEngine:
    """Alarm state of one device's channels (see the module docstring)."""

    def __init__(self, plan: ChannelPlan, config: AlarmConfig) -> None:
        self._plan = plan
        self._n = plan.count
        self._lock = threading.Lock()
        self._channel_active = np.zeros((len(CHANNEL_KINDS), self._n), dtype=bool)
        self._total_active = np.zeros(len(_TOTAL_KINDS), dtype=bool)
        self._los_active = np.zeros(self._n, dtype=bool)
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
        sign = np.array([k[1] for k in CHANNEL_KINDS])[:, None]
        hyst = np.array(
            [
                config.offset_hysteresis_ghz
                if k[0] is AlarmKind.OFFSET_HIGH
                else config.hysteresis_db
                for k in CHANNEL_KINDS
            ]
        )[:, None]
        channel = _limits(np.array(rows), sign, hyst)
        totals = np.array(
            [
                np.nan if getattr(config, k[2]) is None else getattr(config, k[2])
                for k in _TOTAL_KINDS
            ],
            dtype=np.float64,
        )
        total = _limits(
            totals, np.array([k[1] for k in _TOTAL_KINDS]), np.full(2, config.hysteresis_db)
        )
        expected = np.zeros(n, dtype=bool)
        if config.expected_channels:
            expected[np.asarray(config.expected_channels) - 1] = True
        with self._lock:
            self._config = config
            self._channel_limits = channel
            self._total_limits = total
            self._expected = expected if config.expected_channels else None

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
        """Update the state with one reading; the events it raised or cleared."""
        signed = np.stack((-power_dbm, power_dbm, -osnr_db, np.abs(offset_ghz)))
        total = np.array([-total_power_dbm, total_power_dbm])
        with self._lock:
            lim, tlim = self._channel_limits, self._total_limits
            new_ch = _step(self._channel_active, signed, lim) & present
            new_tot = _step(self._total_active, total, tlim)
            self._seen_lit |= present
            expected = self._seen_lit if self._expected is None else self._expected
            new_los = expected & ~present
            ch_changed = new_ch != self._channel_active
            tot_changed = new_tot != self._total_active
            los_changed = new_los != self._los_active
            self._channel_active, self._total_active, self._los_active = new_ch, new_tot, new_los
        if not (ch_changed.any() or tot_changed.any() or los_changed.any()):
            return ()
        channels = self._plan.channel_numbers
        events: list[AlarmEvent] = []
        for i in np.flatnonzero(los_changed):
            events.append(
                AlarmEvent(
                    device_id,
                    time,
                    AlarmKind.LOSS_OF_SIGNAL,
                    int(channels[i]),
                    bool(new_los[i]),
                    _value(power_dbm[i]),
                    None,
                )
            )
        values = (power_dbm, power_dbm, osnr_db, offset_ghz)
        for row, i in zip(*np.nonzero(ch_changed), strict=True):
            kind = CHANNEL_KINDS[row][0]
            events.append(
                AlarmEvent(
                    device_id,
                    time,
                    kind,
                    int(channels[i]),
                    bool(new_ch[row, i]),
                    _value(values[row][i]),
                    _value(lim.threshold[row, i]),
                )
            )
        for row in np.flatnonzero(tot_changed):
            events.append(
                AlarmEvent(
                    device_id,
                    time,
                    _TOTAL_KINDS[row][0],
                    None,
                    bool(new_tot[row]),
                    _value(total_power_dbm),
                    _value(tlim.threshold[row]),
                )
            )
        return tuple(events)

    def active(self) -> list[tuple[AlarmKind, int | None]]:
        """The alarms active now, as (kind, channel) pairs."""
        with self._lock:
            ch, tot, los = (
                self._channel_active.copy(),
                self._total_active.copy(),
                self._los_active.copy(),
            )
        channels = self._plan.channel_numbers
        out: list[tuple[AlarmKind, int | None]] = [
            (AlarmKind.LOSS_OF_SIGNAL, int(channels[i])) for i in np.flatnonzero(los)
        ]
        out += [
            (CHANNEL_KINDS[r][0], int(channels[i])) for r, i in zip(*np.nonzero(ch), strict=True)
        ]
        out += [(_TOTAL_KINDS[r][0], None) for r in np.flatnonzero(tot)]
        return out


def _value(v: float | np.floating[npt.NBitBase]) -> float | None:
    f = float(v)
    return None if f != f else f
