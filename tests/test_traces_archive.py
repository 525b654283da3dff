"""The trace archive on a real journal file: codec bounds, storing, listing, retention."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from drivers.simulator.model import OpticalModel
from odpm.models import AlarmEvent, AlarmKind
from odpm.storage.journal import Journal
from odpm.storage.tracecodec import TraceCodecError, decode_levels, encode_levels
from odpm.storage.traces import TraceArchive, alarm_reason
from tests.support.storage_writer import make_reading

T0 = datetime(2026, 1, 5, 3, 0, tzinfo=UTC)


def _sim_trace(seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    m = OpticalModel(seed=seed)
    return m.trace_frequency_thz(), m.read_trace_dbm().astype(np.float64)


def test_codec_round_trip_is_within_half_a_step_and_keeps_nan() -> None:
    _, p = _sim_trace()
    p[[0, 1, 100, p.size - 1]] = np.nan
    back = decode_levels(encode_levels(p))
    assert np.array_equal(np.isnan(back), np.isnan(p))
    assert np.nanmax(np.abs(back - p)) <= 0.005 + 1e-9
    # all-NaN and empty traces survive too
    assert np.isnan(decode_levels(encode_levels(np.full(5, np.nan)))).all()
    assert decode_levels(encode_levels(np.zeros(0))).size == 0


def test_codec_is_compact_on_a_simulated_trace() -> None:
    _, p = _sim_trace()
    assert len(encode_levels(p)) <= 4096 < p.size * 4


def test_codec_refuses_infinite_levels_and_garbage() -> None:
    with pytest.raises(TraceCodecError, match="finite"):
        encode_levels([1.0, np.inf])
    with pytest.raises(TraceCodecError):
        decode_levels(b"\x01\x00\x02\x05\x00\x00\x00garbage")


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal(tmp_path / "j.sqlite3", maintenance_interval_s=3600, forwarding=False)
    yield j
    j.close()


def test_store_list_get_nearest_and_axis_stored_once(journal: Journal) -> None:
    archive = TraceArchive(journal)
    f, p = _sim_trace()
    ids = [
        archive.store(
            device="d1",
            time=T0 + timedelta(seconds=10 * i),
            frequency_thz=f,
            power_dbm=p + i,
            rbw_ghz=6.25,
            reason="periodic" if i % 2 == 0 else "alarm:los:7",
            scan_id=100 + i,
            identity="PPI,ODPM-96,SIM1,1.0",
        )
        for i in range(6)
    ]
    with sqlite3.connect(journal.path) as c:
        assert c.execute("SELECT count(*) FROM trace_axes").fetchone()[0] == 1
    infos = archive.list_traces("d1")
    assert [i.id for i in infos] == ids
    assert archive.list_traces("d1", reason="alarm:*")[0].reason == "alarm:los:7"
    assert len(archive.list_traces("d1", start=T0 + timedelta(seconds=15))) == 4
    got = archive.get(ids[3])
    assert got is not None and got.info.scan_id == 103 and got.info.points == f.size
    assert np.array_equal(got.frequency_thz, f)
    assert np.max(np.abs(got.power_dbm - (p + 3))) <= 0.005 + 1e-9
    assert archive.get(ids[3], device="other") is None
    before, after = archive.nearest("d1", T0 + timedelta(seconds=24))
    assert before is not None and after is not None
    assert (before.id, after.id) == (ids[2], ids[3])


def test_retention_prunes_oldest_first_and_keeps_active_alarm_traces(journal: Journal) -> None:
    archive = TraceArchive(journal, max_bytes=10_000_000)
    f, p = _sim_trace()
    now = datetime.now(UTC)
    # An active los alarm on channel 7 (its newest event is a raise), a cleared one on 9.
    alarms = [
        AlarmEvent("d1", now - timedelta(hours=3), AlarmKind.LOSS_OF_SIGNAL, 7, True, -60.0, None),
        AlarmEvent("d1", now - timedelta(hours=3), AlarmKind.LOSS_OF_SIGNAL, 9, True, -60.0, None),
    ]
    cleared = AlarmEvent(
        "d1", now - timedelta(hours=2), AlarmKind.LOSS_OF_SIGNAL, 9, False, -20.0, None
    )
    for t, events in ((now - timedelta(hours=3), alarms), (now - timedelta(hours=2), [cleared])):
        journal.append(dataclasses.replace(make_reading("d1", t, 1), alarms=tuple(events)))
    reasons = [alarm_reason("los", 7), alarm_reason("los", 9)] + ["periodic"] * 8
    ids = [
        archive.store(
            device="d1",
            time=now - timedelta(hours=3) + timedelta(minutes=i),
            frequency_thz=f,
            power_dbm=p,
            rbw_ghz=6.25,
            reason=r,
        )
        for i, r in enumerate(reasons)
    ]
    per_trace = archive.list_traces("d1")[0].bytes
    # Room for 5 traces: the oldest unprotected go first; the active alarm's trace stays.
    archive.max_bytes = per_trace * 5
    journal.run_maintenance()
    left = [i.id for i in archive.list_traces("d1")]
    assert ids[0] in left  # alarm:los:7 is still active
    assert ids[1] not in left  # alarm:los:9 cleared: an ordinary old trace
    assert left == [ids[0], *ids[-4:]]
    assert archive.used_bytes() <= archive.max_bytes
    # Age: everything older than the limit goes, except the active alarm's trace.
    archive.retention_days = 1 / 24 / 60  # one minute
    journal.run_maintenance()
    assert [i.id for i in archive.list_traces("d1")] == [ids[0]]


def test_a_journal_from_before_the_archive_gains_its_tables(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    with Journal(path, maintenance_interval_s=3600, forwarding=False) as old:
        scan_id = old.append(make_reading("d", T0, 1))
    with sqlite3.connect(path) as c:
        tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "traces" not in tables  # the journal alone does not make them
    with Journal(path, maintenance_interval_s=3600, forwarding=False) as j:
        archive = TraceArchive(j)
        f, p = _sim_trace()
        tid = archive.store(
            device="d", time=T0, frequency_thz=f, power_dbm=p, rbw_ghz=6.25, reason="manual",
            scan_id=scan_id,
        )  # fmt: skip
        got = archive.get(tid)
        assert got is not None and got.info.scan_id == scan_id
        assert j.latest("d") is not None  # the readings are still there
