"""The journal: durable appends, group commit, latest, alarms, retention, rollups."""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from odpm.config import InfluxConfig, StorageConfig
from odpm.models import AlarmEvent, AlarmKind, Reading
from odpm.storage import JOURNAL_FILE, Journal, JournalClosedError
from odpm.storage.journal import VALUE_DECIMALS
from tests.support.storage_writer import make_reading

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def q(a: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(a, dtype=np.float64), VALUE_DECIMALS)


def assert_same_reading(got: Reading | None, want: Reading) -> None:
    assert got is not None
    assert got.device_id == want.device_id and got.time == want.time and got.mode == want.mode
    np.testing.assert_array_equal(got.channel, want.channel)
    np.testing.assert_array_equal(got.frequency_thz, want.frequency_thz)
    np.testing.assert_array_equal(got.present, want.present)
    np.testing.assert_array_equal(got.quality, want.quality)
    for name in ("power_dbm", "signal_power_dbm", "osnr_db", "offset_ghz"):
        np.testing.assert_array_equal(getattr(got, name), q(getattr(want, name)), err_msg=name)
    for name in ("total_power_dbm", "tilt_db", "flatness_db", "min_osnr_db"):
        a, b = getattr(got, name), getattr(want, name)
        assert (math.isnan(a) and math.isnan(b)) or a == b, name
    assert got.lit_channels == want.lit_channels
    assert got.temperature_c == want.temperature_c
    assert got.alarms == want.alarms


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal(tmp_path / "j.sqlite3", retention_days=7, max_bytes=10**9)
    yield j
    j.close()


def test_latest_round_trips_every_field(journal: Journal) -> None:
    r1 = make_reading("a", T0, 1, alarms=True)
    r2 = make_reading("a", T0 + timedelta(seconds=1), 2, mode="power")
    other = make_reading("b", T0 + timedelta(seconds=5), 3)
    ids = [journal.append(r) for r in (r1, r2, other)]
    assert ids == sorted(ids) and len(set(ids)) == 3
    assert_same_reading(journal.latest("a"), r2)
    assert journal.latest("nope") is None
    assert journal.devices() == ["a", "b"]
    events = journal.alarm_events(device="a")
    assert len(events) == 2 and set(events) == set(r1.alarms)
    assert journal.alarm_events(since=T0 + timedelta(seconds=1)) == []


def test_survives_reopen(tmp_path: Path) -> None:
    r = make_reading("a", T0, 7, alarms=True)
    with Journal(tmp_path / "j.sqlite3") as j:
        j.append(r)
    with Journal(tmp_path / "j.sqlite3") as j:
        assert_same_reading(j.latest("a"), r)


def test_concurrent_appends_share_commits(journal: Journal) -> None:
    threads, per_thread = 8, 60
    ids: list[int] = []
    lock = threading.Lock()

    def worker(k: int) -> None:
        for i in range(per_thread):
            rid = journal.append(make_reading(f"d{k}", T0 + timedelta(milliseconds=i), i))
            with lock:
                ids.append(rid)

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=60)
    assert len(ids) == len(set(ids)) == threads * per_thread
    assert journal.scan_count() == threads * per_thread
    stats = journal.stats()
    assert stats.appended == threads * per_thread
    assert stats.commits < stats.appended  # group commit actually grouped


def test_bad_readings_name_the_problem(journal: Journal) -> None:
    r = make_reading("a", T0, 1)
    with pytest.raises(ValueError, match="timezone-aware"):
        journal.append(make_reading("a", T0.replace(tzinfo=None), 1))
    bad = Reading(**{**{f: getattr(r, f) for f in r.__dataclass_fields__}, "osnr_db": np.zeros(3)})
    with pytest.raises(ValueError, match="osnr_db has 3 values for 80 channels"):
        journal.append(bad)
    # A failed append does not disturb the next one.
    assert journal.append(r) > 0


def test_append_after_close_is_an_error(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite3")
    j.close()
    with pytest.raises(JournalClosedError):
        j.append(make_reading("a", T0, 1))


def test_from_config_places_file_and_mode(tmp_path: Path) -> None:
    cfg = StorageConfig(data_dir=tmp_path / "data", influx=InfluxConfig(url="http://x:8086"))
    with Journal.from_config(cfg) as j:
        assert j.path == tmp_path / "data" / JOURNAL_FILE and j.forwarding
    with Journal.from_config(StorageConfig(data_dir=tmp_path / "d2")) as j:
        assert not j.forwarding


def _old_readings(j: Journal, n: int) -> None:
    old = datetime.now(UTC) - timedelta(days=10)
    for i in range(n):
        j.append(make_reading("a", old + timedelta(seconds=i), i))


def test_retention_keeps_unforwarded_rows(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite3", retention_days=7, forwarding=True) as j:
        _old_readings(j, 10)
        j.append(make_reading("a", datetime.now(UTC), 99))
        j.run_maintenance()
        assert j.scan_count() == 11  # old, but never forwarded: kept
        j.set_cursors(scan_id=4)
        j.run_maintenance()
        assert j.scan_count() == 7  # forwarded old rows go, the rest stay


def test_retention_without_forwarder_ignores_cursor(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite3", retention_days=7, forwarding=False) as j:
        _old_readings(j, 10)
        j.append(make_reading("a", datetime.now(UTC), 99))
        j.run_maintenance()
        assert j.scan_count() == 1


def test_size_cap_drops_oldest_and_counts_unforwarded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cap = 400_000
    with Journal(tmp_path / "j.sqlite3", max_bytes=cap, forwarding=True) as j:
        now = datetime.now(UTC)
        for i in range(300):  # about 2 kB a row: well over the cap
            j.append(make_reading("a", now + timedelta(milliseconds=i), i))
        with caplog.at_level(logging.WARNING, logger="odpm.storage.journal"):
            j.run_maintenance()
        stats = j.stats()
        left = j.scan_count()
        assert 0 < left < 300
        assert stats.used_bytes <= cap
        assert stats.dropped_unforwarded == 300 - left
        assert "never forwarded" in caplog.text
        # The newest reading is what survives.
        newest = j.latest("a")
        assert newest is not None and newest.time == now + timedelta(milliseconds=299)


def test_rollups_are_mean_min_max_of_stored_values(journal: Journal) -> None:
    readings = [make_reading("a", T0 + timedelta(seconds=2 * i), i) for i in range(75)]
    for r in readings:
        journal.append(r)
    journal.run_maintenance()  # the open minute (the last) is not rolled up yet
    assert [r.minute_us for r in journal.read_rollups(0, 10)] == [
        int(T0.timestamp() * 1e6),
        int(T0.timestamp() * 1e6) + 60_000_000,
    ]
    journal.run_maintenance(close_open_minutes=True)
    rollups = journal.read_rollups(0, 10)
    assert len(rollups) == 3
    first = [r for r in readings if r.time < T0 + timedelta(minutes=1)]
    power = q(np.stack([r.power_dbm for r in first]))
    osnr = q(np.stack([r.osnr_db for r in first]))
    r0 = rollups[0]
    assert r0.samples == len(first) == 30
    np.testing.assert_allclose(r0.values[0], q(power.mean(axis=0)), atol=1e-4)
    np.testing.assert_array_equal(r0.values[1], power.min(axis=0))
    np.testing.assert_array_equal(r0.values[2], power.max(axis=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns (dark channels)
        np.testing.assert_allclose(r0.values[3], q(np.nanmean(osnr, axis=0)), atol=1e-4)
    assert np.isnan(r0.values[3][6])  # dark channel 7: no OSNR at all in the minute
    # Idempotent: running again adds nothing.
    journal.run_maintenance(close_open_minutes=True)
    assert len(journal.read_rollups(0, 10)) == 3


def test_returned_ids_name_the_rows_committed(journal: Journal) -> None:
    """Group commit derives ids from one executemany: each caller gets its own row's id."""
    threads, per_thread = 6, 40
    got: dict[int, tuple[str, datetime]] = {}
    lock = threading.Lock()

    def worker(k: int) -> None:
        for i in range(per_thread):
            t = T0 + timedelta(milliseconds=7 * i + k)
            rid = journal.append(make_reading(f"d{k}", t, i, alarms=i % 5 == 0))
            with lock:
                got[rid] = (f"d{k}", t)

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for th in ts:
        th.start()
    for th in ts:
        th.join(timeout=60)
    stored = journal.read_scans(0, 10_000)
    assert len(stored) == len(got) == threads * per_thread
    for s in stored:
        device, t = got[s.id]
        assert (s.device, s.to_reading().time) == (device, t)
        assert len(s.alarms) == (2 if (t - T0) // timedelta(milliseconds=1) // 7 % 5 == 0 else 0)
        assert all(a.device_id == device for a in s.alarms)
    for k in range(threads):  # devices row points at each device's newest scan
        latest = journal.latest(f"d{k}")
        assert latest is not None and latest.time == T0 + timedelta(milliseconds=7 * 39 + k)


def test_active_alarms_are_decided_by_each_keys_newest_event(journal: Journal) -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)

    def event(i: int, kind: AlarmKind, channel: int | None, active: bool) -> AlarmEvent:
        return AlarmEvent("a", t0 + timedelta(seconds=i), kind, channel, active, -31.0, -30.0)

    sequence = [
        event(0, AlarmKind.POWER_LOW, 5, True),  # raised first, never cleared
        event(1, AlarmKind.OSNR_LOW, 9, True),
        event(2, AlarmKind.TOTAL_POWER_LOW, None, True),
        event(3, AlarmKind.OSNR_LOW, 9, False),  # cleared
    ]
    # Many later events on other keys must not push the oldest raise out.
    sequence += [event(10 + i, AlarmKind.OSNR_LOW, 20 + i % 40, i % 2 == 0) for i in range(200)]
    for i, e in enumerate(sequence):
        base = make_reading("a", e.time, i)
        journal.append(dataclasses.replace(base, alarms=(e,)))
    active = {(e.kind, e.channel) for e in journal.active_alarms()}
    expected_tail = {(AlarmKind.OSNR_LOW, 20 + i % 40) for i in range(160, 200) if i % 2 == 0}
    assert (AlarmKind.POWER_LOW, 5) in active
    assert (AlarmKind.TOTAL_POWER_LOW, None) in active
    assert (AlarmKind.OSNR_LOW, 9) not in active
    assert active == {(AlarmKind.POWER_LOW, 5), (AlarmKind.TOTAL_POWER_LOW, None)} | expected_tail
    assert journal.active_alarms(device="other") == []
