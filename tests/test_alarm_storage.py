"""Alarm events' ``reason`` and scan-less ``device_lost`` events through the journal
(with the schema migration of an older file), the line protocol and a real influxd."""

from __future__ import annotations

import dataclasses
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from odpm.config import InfluxConfig
from odpm.models import AlarmEvent, AlarmKind, ClearReason
from odpm.storage import Forwarder, Journal
from odpm.storage.history import InfluxHistory
from odpm.storage.lineprotocol import alarm_line
from tests.support.influxd import InfluxServer
from tests.support.storage_writer import make_reading

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

#: The alarms table as versions before the ``reason`` column created it.
_OLD_ALARMS = """
CREATE TABLE alarms(
    id INTEGER PRIMARY KEY AUTOINCREMENT, scan_id INTEGER NOT NULL,
    device TEXT NOT NULL, time_us INTEGER NOT NULL, kind TEXT NOT NULL,
    channel INTEGER, active INTEGER NOT NULL, value REAL, threshold REAL);
INSERT INTO alarms(scan_id, device, time_us, kind, channel, active, value, threshold)
    VALUES (999, 'old', 1700000000000000, 'osnr_low', 3, 1, 12.4, 15.0);
"""


def _cleared(device: str, t: datetime) -> AlarmEvent:
    return AlarmEvent(device, t, AlarmKind.OSNR_LOW, 3, False, None, 15.0, ClearReason.NOT_MEASURED)


def test_old_journal_gains_reason_column_and_keeps_its_events(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.executescript(_OLD_ALARMS)
    with Journal(path) as j:
        (old,) = j.alarm_events(device="old")
        assert (old.kind, old.active, old.value, old.reason) == (
            AlarmKind.OSNR_LOW,
            True,
            12.4,
            None,
        )
        reading = dataclasses.replace(make_reading("new", T0, 1), alarms=(_cleared("new", T0),))
        j.append(reading)
        (ev,) = j.alarm_events(device="new")
        assert ev.reason is ClearReason.NOT_MEASURED and ev.value is None
        assert j.latest("new") is not None
        assert j.latest("new").alarms[0].reason is ClearReason.NOT_MEASURED  # type: ignore[union-attr]
    with Journal(path) as j:  # opening again: the migration is idempotent
        assert len(j.alarm_events()) == 2


def test_scanless_device_lost_is_stored_and_active(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite3") as j:
        j.append(make_reading("d", T0, 1))
        lost = AlarmEvent(
            "d", T0 + timedelta(seconds=40), AlarmKind.DEVICE_LOST, None, True, 31.0, 30.0
        )
        j.append_alarms([lost])
        assert j.active_alarms("d") == [lost]
        cleared = dataclasses.replace(
            lost, time=T0 + timedelta(seconds=50), active=False, value=None
        )
        j.append(dataclasses.replace(make_reading("d", cleared.time, 2), alarms=(cleared,)))
        assert j.active_alarms("d") == []
        assert [e.active for e in j.alarm_events("d")] == [False, True]


def test_alarm_line_carries_reason_as_a_string_field() -> None:
    line = alarm_line(
        "d",
        5,
        kind="osnr_low",
        channel=3,
        active=False,
        value=None,
        threshold=15.0,
        reason="not_measured",
    )
    assert line == (
        "alarm,device=d,channel=03,kind=osnr_low active=false,threshold=15.0,"
        'reason="not_measured" 5\n'
    )
    assert "reason" not in alarm_line(
        "d", 5, kind="los", channel=3, active=True, value=None, threshold=None
    )


@pytest.mark.influx
def test_device_lost_and_reason_reach_influxdb(
    influxd: InfluxServer, influx_db: str, tmp_path: Path
) -> None:
    """A scan-less event is forwarded by its own cursor (once), and a replica reading
    InfluxDB sees device_lost active and the reason of a clear."""
    cfg = InfluxConfig(url=influxd.url, database=influx_db)
    with Journal(tmp_path / "j.sqlite3") as j:
        j.append(dataclasses.replace(make_reading("d", T0, 1), alarms=(_cleared("d", T0),)))
        lost = AlarmEvent(
            "d", T0 + timedelta(seconds=40), AlarmKind.DEVICE_LOST, None, True, 31.0, 30.0
        )
        j.append_alarms([lost])
        history = InfluxHistory(cfg)
        try:
            with Forwarder(j, cfg, poll_interval_s=0.02, backoff_initial_s=0.05):
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    active = history.active_alarms("d")
                    if active:
                        break
                    time.sleep(0.1)
            assert [(e.kind, e.channel, e.value, e.threshold) for e in active] == [
                (AlarmKind.DEVICE_LOST, None, 31.0, 30.0)
            ]
            events = history.alarm_events("d")
            assert {(e.kind, e.reason) for e in events} == {
                (AlarmKind.DEVICE_LOST, None),
                (AlarmKind.OSNR_LOW, ClearReason.NOT_MEASURED),
            }
            assert j.alarm_cursor() > 0
            # A second forwarder starts from the cursor: the event is not sent twice.
            with Forwarder(j, cfg, poll_interval_s=0.02) as fwd:
                assert fwd.wait_drained(10)
                time.sleep(0.5)
            assert len(history.alarm_events("d")) == 2
        finally:
            history.close()


def test_alarms_left_active_by_a_previous_run_clear_after_a_restart(tmp_path: Path) -> None:
    """Before: a restarted service never cleared what the last run left active (its
    pipeline did not know), so those alarms stayed in /alarms?active=true for good."""
    from odpm.config import Settings, StorageConfig
    from odpm.service import Service

    old = datetime.now(UTC) - timedelta(minutes=5)
    with Journal(tmp_path / "journal.sqlite3") as j:
        j.append_alarms(
            [
                AlarmEvent("sim1", old, AlarmKind.POWER_HIGH, 5, True, 7.0, 5.0),
                AlarmEvent("sim1", old, AlarmKind.DEVICE_LOST, None, True, 31.0, 30.0),
            ]
        )
    service = Service.from_settings(
        Settings(storage=StorageConfig(data_dir=tmp_path)),
        simulate=1,
        simulate_options={"interval_s": 0.2},
    )
    service.start()
    try:
        assert {e.kind for e in service.active_alarms("sim1")} >= {
            AlarmKind.POWER_HIGH,
            AlarmKind.DEVICE_LOST,
        }
        deadline = time.monotonic() + 30
        stale = {AlarmKind.POWER_HIGH, AlarmKind.DEVICE_LOST}
        while stale & {e.kind for e in service.active_alarms("sim1")}:
            assert time.monotonic() < deadline, service.active_alarms("sim1")
            time.sleep(0.1)
        assert service.journal is not None
        cleared = {
            (e.kind, e.channel) for e in service.journal.alarm_events("sim1") if not e.active
        }
        assert {(AlarmKind.POWER_HIGH, 5), (AlarmKind.DEVICE_LOST, None)} <= cleared
    finally:
        service.stop()


def test_switching_to_power_mode_clears_osnr_alarms_as_not_measured(tmp_path: Path) -> None:
    """A mode that cannot measure OSNR must not leave osnr_low active with stale values."""
    from odpm.config import AlarmConfig, Settings, StorageConfig
    from odpm.service import Service

    settings = Settings(
        storage=StorageConfig(data_dir=tmp_path), alarms=AlarmConfig(osnr_low_db=60.0)
    )
    service = Service.from_settings(
        settings, simulate=1, simulate_options={"interval_s": 0.2, "mode": "trace"}
    )
    service.start()
    try:

        def osnr_active() -> int:
            return sum(e.kind is AlarmKind.OSNR_LOW for e in service.active_alarms("sim1"))

        deadline = time.monotonic() + 30
        while osnr_active() < 10:
            assert time.monotonic() < deadline, "osnr_low not raised"
            time.sleep(0.1)
        service.reconfigure("sim1", mode="power")
        while osnr_active():
            assert time.monotonic() < deadline + 30, "osnr_low not cleared in power mode"
            time.sleep(0.1)
        assert service.journal is not None
        clears = [
            e
            for e in service.journal.alarm_events("sim1", limit=1000)
            if e.kind is AlarmKind.OSNR_LOW and not e.active
        ]
        assert clears and all(
            e.reason is ClearReason.NOT_MEASURED and e.value is None for e in clears
        )
    finally:
        service.stop()
