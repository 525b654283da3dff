"""The archive policy and the deviation alarm as units (synthetic scans and times)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from odpm.alarms import DeviationAlarm
from odpm.archive import MAX_RING, Keep, TracePolicy
from odpm.config import AlarmConfig, ArchiveConfig, ArchivePolicy, ArchivePolicyOverride
from odpm.grid import ChannelPlan
from odpm.models import AlarmEvent, AlarmKind, TraceScan

T0 = datetime(2026, 1, 5, 3, 0, tzinfo=UTC)  # on a minute boundary
AXIS = np.linspace(191.3, 196.1, 50)


def _scan(t: float) -> TraceScan:
    return TraceScan("d", T0 + timedelta(seconds=t), AXIS, np.zeros(50), 6.25)


def _los(t: float, active: bool = True) -> AlarmEvent:
    return AlarmEvent(
        "d", T0 + timedelta(seconds=t), AlarmKind.LOSS_OF_SIGNAL, 7, active, -60.0, None
    )


def _run(
    policy: TracePolicy, times: list[float], alarm_at: float | None = None
) -> list[tuple[float, str]]:
    kept = []
    for k, t in enumerate(times):
        alarms = [_los(t)] if alarm_at is not None and t == alarm_at else []
        for keep in policy.on_scan(_scan(t), k, alarms):
            kept.append(((keep.scan.time - T0).total_seconds(), keep.reason))
    return kept


def test_periodic_keeps_one_trace_per_bucket() -> None:
    policy = TracePolicy(ArchivePolicy(every_s=60))
    kept = _run(policy, [i * 0.7 for i in range(1000)])  # 700 s at 0.7 s per scan
    assert [r for _, r in kept] == ["periodic"] * 12  # buckets 0..11 (0-699.3 s)
    assert [int(t // 60) for t, _ in kept] == list(range(12))


def test_alarm_keeps_pre_ring_and_post_window_with_its_reason() -> None:
    policy = TracePolicy(ArchivePolicy(every_s=0, pre_s=3, post_s=2))
    kept = _run(policy, [float(t) for t in range(20)], alarm_at=10.0)
    assert kept == [(t, "alarm:los:7") for t in (7.0, 8.0, 9.0, 10.0, 11.0, 12.0)]


def test_alarm_off_and_cleared_events_keep_nothing() -> None:
    policy = TracePolicy(ArchivePolicy(every_s=0, on_alarm=False))
    assert _run(policy, [float(t) for t in range(20)], alarm_at=10.0) == []
    policy = TracePolicy(ArchivePolicy(every_s=0))
    assert policy.on_scan(_scan(1), 1, [_los(1, active=False)]) == []


def test_ring_is_bounded() -> None:
    policy = TracePolicy(ArchivePolicy(every_s=0, pre_s=600))
    times = [i * 0.01 for i in range(2000)]
    kept = _run(policy, times, alarm_at=times[-1])
    assert len(kept) == MAX_RING + 1


def test_manual_finds_recent_scans_and_honours_on_demand() -> None:
    policy = TracePolicy(ArchivePolicy(every_s=0))
    scan = _scan(1)
    policy.on_scan(scan, 41, [])
    assert policy.manual(scan) == (41, None)
    policy.kept(Keep(scan, 41, "periodic"), 7)
    assert policy.manual(scan) == (41, 7)
    assert policy.manual(_scan(2)) is None
    policy.set_policy(ArchivePolicy(on_demand=False))
    assert policy.manual(scan) is None


def test_device_override_inherits_what_it_leaves_out() -> None:
    cfg = ArchiveConfig(every_s=30, pre_s=5)
    got = cfg.policy_for(ArchivePolicyOverride(every_s=10, reference="golden"))
    assert (got.every_s, got.pre_s, got.reference, got.on_alarm) == (10, 5, "golden", True)


def test_deviation_raises_and_clears_with_hysteresis() -> None:
    plan = ChannelPlan(192.1, 50.0, 4)
    check = DeviationAlarm(plan)
    config = AlarmConfig(deviation_db=1.0, hysteresis_db=0.5)
    ref = np.array([-20.0, -20.0, -20.0, np.nan])
    check.set_reference(ref)

    def step(p: list[float], cfg: AlarmConfig = config) -> list[tuple[int | None, bool]]:
        return [(e.channel, e.active) for e in check.evaluate("d", T0, np.array(p), cfg)]

    assert step([-20.2, -21.2, -18.9, -10.0]) == [(2, True), (3, True)]  # ch 4: no reference
    assert step([-20.2, -20.8, -19.2, -10.0]) == []  # inside the hysteresis band: held
    assert step([-20.2, -20.4, -19.6, -10.0]) == [(2, False), (3, False)]
    assert step([-21.5, -20.0, -20.0, -10.0]) == [(1, True)]
    # Switched off: what was raised clears.
    assert step([-21.5, -20.0, -20.0, -10.0], AlarmConfig()) == [(1, False)]


def test_ring_holds_one_axis_array_for_equal_axes() -> None:
    policy = TracePolicy(ArchivePolicy(every_s=0, pre_s=100))
    scans = [
        TraceScan("d", T0 + timedelta(seconds=t), AXIS.copy(), np.zeros(50), 6.25) for t in range(5)
    ]
    for k, s in enumerate(scans):
        policy.on_scan(s, k, [])
    kept = policy.on_scan(_scan(5), 5, [_los(5)])
    assert len(kept) == 6
    axes = {id(k.scan.frequency_thz) for k in kept[:-1]}
    assert len(axes) == 1 and np.array_equal(kept[0].scan.frequency_thz, AXIS)
