"""Alarm hysteresis: raise once, no chatter inside the band, clear once."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
import pytest

from odpm.alarms import AlarmEngine
from odpm.config import AlarmConfig, ThresholdValues
from odpm.grid import ChannelPlan
from odpm.models import AlarmEvent, AlarmKind, ClearReason

PLAN = ChannelPlan(192.1, 50.0, 4)
T0 = datetime(2026, 1, 1, tzinfo=UTC)
OFF = dict(
    power_low_dbm=None,
    power_high_dbm=None,
    osnr_low_db=None,
    offset_high_ghz=None,
    total_power_low_dbm=None,
    total_power_high_dbm=None,
)


def _feed(
    engine: AlarmEngine,
    *,
    power: Sequence[float] | None = None,
    osnr: Sequence[float] | None = None,
    offset: Sequence[float] | None = None,
    present: Sequence[bool] | None = None,
    total: float = 0.0,
) -> tuple[AlarmEvent, ...]:
    n = PLAN.count
    nan = np.full(n, np.nan)
    return engine.evaluate(
        "dev",
        T0,
        present=np.ones(n, bool) if present is None else np.asarray(present),
        power_dbm=nan if power is None else np.asarray(power, float),
        osnr_db=nan if osnr is None else np.asarray(osnr, float),
        offset_ghz=nan if offset is None else np.asarray(offset, float),
        total_power_dbm=total,
    )


def test_osnr_low_raises_once_holds_in_band_clears_once() -> None:
    cfg = AlarmConfig(**{**OFF, "osnr_low_db": 15.0})
    eng = AlarmEngine(PLAN, cfg)
    # 16 (ok) -> 14.9 (raise) -> wander inside 15..15.5 (hold) -> 15.5 (clear) -> 15.2 (hold)
    sequence = [16.0, 14.9, 14.0, 15.1, 15.4, 14.95, 15.49, 15.5, 15.2, 15.1]
    events = []
    for v in sequence:
        events.append(_feed(eng, osnr=[v, 20, 20, 20]))
    kinds = [(i, e.kind, e.active) for i, evs in enumerate(events) for e in evs]
    assert kinds == [(1, AlarmKind.OSNR_LOW, True), (7, AlarmKind.OSNR_LOW, False)]
    raised = events[1][0]
    assert raised.channel == 1 and raised.value == pytest.approx(14.9) and raised.threshold == 15.0
    assert events[7][0].value == pytest.approx(15.5)


def test_power_high_mirror_and_per_channel_override() -> None:
    cfg = AlarmConfig(
        **{**OFF, "power_high_dbm": 0.0},
        channels={3: ThresholdValues(power_high_dbm=-10.0)},
    )
    eng = AlarmEngine(PLAN, cfg)
    ev = _feed(eng, power=[-5, -5, -5, -5])
    assert [(e.channel, e.kind, e.active, e.threshold) for e in ev] == [
        (3, AlarmKind.POWER_HIGH, True, -10.0)
    ]
    assert _feed(eng, power=[-5, -5, -10.3, -5]) == ()  # inside the band
    ev = _feed(eng, power=[-5, -5, -10.5, -5])
    assert [(e.channel, e.active) for e in ev] == [(3, False)]


def test_override_inherits_unset_fields() -> None:
    cfg = AlarmConfig(
        **{**OFF, "power_low_dbm": -30.0, "osnr_low_db": 15.0},
        channels={2: ThresholdValues(osnr_low_db=10.0)},
    )
    eng = AlarmEngine(PLAN, cfg)
    ev = _feed(eng, power=[-31, -31, -20, -20], osnr=[12, 12, 20, 20])
    got = sorted((e.channel, e.kind.value) for e in ev)
    assert got == [(1, "osnr_low"), (1, "power_low"), (2, "power_low")]


def test_offset_uses_absolute_value_and_its_own_hysteresis() -> None:
    cfg = AlarmConfig(**{**OFF, "offset_high_ghz": 5.0}, offset_hysteresis_ghz=1.0)
    eng = AlarmEngine(PLAN, cfg)
    assert [e.active for e in _feed(eng, offset=[-5.5, 0, 0, 0])] == [True]
    assert _feed(eng, offset=[-4.2, 0, 0, 0]) == ()
    assert [e.active for e in _feed(eng, offset=[3.9, 0, 0, 0])] == [False]


def test_los_expected_channels_and_seen_lit() -> None:
    eng = AlarmEngine(PLAN, AlarmConfig(**OFF, expected_channels=[2]))
    ev = _feed(eng, present=[False, False, False, False])
    assert [(e.kind, e.channel, e.active) for e in ev] == [(AlarmKind.LOSS_OF_SIGNAL, 2, True)]
    assert _feed(eng, present=[False, False, False, False]) == ()
    ev = _feed(eng, present=[False, True, False, False])
    assert [(e.channel, e.active) for e in ev] == [(2, False)]

    seen = AlarmEngine(PLAN, AlarmConfig(**OFF))
    assert _feed(seen, present=[False, False, True, False]) == ()  # ch 3 now "seen lit"
    ev = _feed(seen, present=[False, False, False, False])
    assert [(e.kind, e.channel, e.active) for e in ev] == [(AlarmKind.LOSS_OF_SIGNAL, 3, True)]


def test_unmeasured_value_clears_with_reason_not_measured() -> None:
    """Issue 11: a channel whose OSNR comes back null (noise_unresolved) used to keep its
    osnr_low forever with the stale value; it clears, saying why, with no value."""
    eng = AlarmEngine(PLAN, AlarmConfig(**{**OFF, "osnr_low_db": 15.0}))
    assert len(_feed(eng, osnr=[10, 20, 20, 20])) == 1
    ev = _feed(eng, osnr=[np.nan, 20, 20, 20])
    assert [(e.kind, e.channel, e.active, e.value, e.reason) for e in ev] == [
        (AlarmKind.OSNR_LOW, 1, False, None, ClearReason.NOT_MEASURED)
    ]
    assert ev[0].to_dict()["reason"] == "not_measured"
    assert _feed(eng, osnr=[np.nan, 20, 20, 20]) == ()  # nothing to raise on no value
    assert [e.active for e in _feed(eng, osnr=[10, 20, 20, 20])] == [True]  # measured again


def test_dark_channel_clears_level_alarms_as_not_measured() -> None:
    eng = AlarmEngine(PLAN, AlarmConfig(**{**OFF, "power_low_dbm": -30.0}))
    assert len(_feed(eng, power=[-35, -20, -20, -20])) == 1
    ev = _feed(eng, power=[-35, -20, -20, -20], present=[False, True, True, True])
    got = [(e.kind, e.active, e.reason) for e in ev if e.kind is AlarmKind.POWER_LOW]
    assert got == [(AlarmKind.POWER_LOW, False, ClearReason.NOT_MEASURED)]


def test_value_back_in_range_clears_without_reason() -> None:
    eng = AlarmEngine(PLAN, AlarmConfig(**{**OFF, "osnr_low_db": 15.0}))
    _feed(eng, osnr=[10, 20, 20, 20])
    (ev,) = _feed(eng, osnr=[16, 20, 20, 20])
    assert (ev.active, ev.reason, ev.value) == (False, None, 16.0)


def test_total_power_not_measured_clears() -> None:
    eng = AlarmEngine(PLAN, AlarmConfig(**{**OFF, "total_power_low_dbm": -20.0}))
    _feed(eng, total=-21.0)
    (ev,) = _feed(eng, total=float("nan"))
    assert (ev.kind, ev.active, ev.reason) == (
        AlarmKind.TOTAL_POWER_LOW,
        False,
        ClearReason.NOT_MEASURED,
    )


def test_device_lost_raises_once_and_next_reading_clears() -> None:
    eng = AlarmEngine(PLAN, AlarmConfig(**OFF))
    raised = eng.device_lost("dev", T0, 31.5, 30.0)
    assert raised is not None
    assert (raised.kind, raised.channel, raised.active, raised.value, raised.threshold) == (
        AlarmKind.DEVICE_LOST,
        None,
        True,
        31.5,
        30.0,
    )
    assert eng.device_lost("dev", T0, 40.0, 30.0) is None  # once
    assert (AlarmKind.DEVICE_LOST, None) in eng.active()
    ev = _feed(eng)
    assert [(e.kind, e.active) for e in ev] == [(AlarmKind.DEVICE_LOST, False)]
    assert _feed(eng) == ()
    assert eng.active() == []


def test_total_power_alarms() -> None:
    eng = AlarmEngine(PLAN, AlarmConfig(**{**OFF, "total_power_low_dbm": -20.0}))
    ev = _feed(eng, total=-21.0)
    assert [(e.kind, e.channel, e.active) for e in ev] == [(AlarmKind.TOTAL_POWER_LOW, None, True)]
    assert _feed(eng, total=-19.7) == ()
    assert [e.active for e in _feed(eng, total=-19.4)] == [False]


def test_threshold_removed_at_run_time_clears() -> None:
    eng = AlarmEngine(PLAN, AlarmConfig(**{**OFF, "osnr_low_db": 15.0}))
    assert len(_feed(eng, osnr=[10, 20, 20, 20])) == 1
    eng.configure(AlarmConfig(**OFF))
    ev = _feed(eng, osnr=[10, 20, 20, 20])
    assert [(e.kind, e.active, e.threshold, e.reason) for e in ev] == [
        (AlarmKind.OSNR_LOW, False, None, ClearReason.THRESHOLD_OFF)
    ]


def test_bad_channel_in_config_is_named() -> None:
    with pytest.raises(ValueError, match="channel 9"):
        AlarmEngine(PLAN, AlarmConfig(expected_channels=[9]))


def test_configure_while_evaluating_from_another_thread() -> None:
    eng = AlarmEngine(PLAN, AlarmConfig(**{**OFF, "osnr_low_db": 15.0}))
    stop = threading.Event()

    def flip() -> None:
        while not stop.is_set():
            eng.configure(AlarmConfig(**{**OFF, "osnr_low_db": 15.0}))

    t = threading.Thread(target=flip)
    t.start()
    try:
        raised = cleared = 0
        for i in range(400):
            for e in _feed(eng, osnr=[10 if i % 2 else 20, 20, 20, 20]):
                raised += e.active
                cleared += not e.active
    finally:
        stop.set()
        t.join(5)
    assert raised == 200 and cleared == 199


def test_restored_alarms_clear_on_the_first_reading_that_says_so() -> None:
    """Alarms a previous run left active (from storage) must not stick after a restart."""
    eng = AlarmEngine(PLAN, AlarmConfig(**{**OFF, "osnr_low_db": 15.0, "total_power_low_dbm": -20}))
    eng.restore(
        [
            AlarmEvent("dev", T0, AlarmKind.OSNR_LOW, 2, True, 12.0, 15.0),
            AlarmEvent("dev", T0, AlarmKind.DEVICE_LOST, None, True, 40.0, 30.0),
            AlarmEvent("dev", T0, AlarmKind.TOTAL_POWER_LOW, None, True, -25.0, -20.0),
            AlarmEvent("dev", T0, AlarmKind.OSNR_LOW, 99, True, 12.0, 15.0),  # not in the plan
        ]
    )
    assert len(eng.active()) == 3
    ev = _feed(eng, osnr=[20, 20, 20, 20], total=0.0)
    assert sorted((e.kind.value, e.channel, e.active) for e in ev) == [
        ("device_lost", None, False),
        ("osnr_low", 2, False),
        ("total_power_low", None, False),
    ]
    assert eng.active() == []
