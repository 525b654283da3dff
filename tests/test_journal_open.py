"""A bad journal at start, an unwritable data dir, two services on one data dir, the WAL
bound (real files, real mounts where the kernel allows, ``odpm serve`` as a process)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from odpm.storage.datadir import LOCK_FILE
from odpm.storage.journal import (
    JOURNAL_FILE,
    WAL_LIMIT_BYTES,
    WAL_LIMIT_MIN_BYTES,
    Journal,
    wal_limit_bytes,
)
from tests.support.serve_process import ServeProcess, journal_scans
from tests.support.storage_writer import make_reading
from tests.support.waiting import wait_for

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def filled_journal(path: Path, n: int) -> None:
    with Journal(path) as j:
        for i in range(n):
            j.append(make_reading("c", T0 + timedelta(seconds=i), i))


def corrupt(path: Path, offset: int, n: int = 4096) -> None:
    with path.open("r+b") as fh:
        fh.seek(offset)
        fh.write(os.urandom(n))


@pytest.mark.parametrize("where", ["header", "middle"])
def test_damaged_journal_is_moved_aside_and_a_new_one_started(
    tmp_path: Path, where: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / JOURNAL_FILE
    filled_journal(path, 300)
    size = path.stat().st_size
    corrupt(path, 0 if where == "header" else (size // 2) // 4096 * 4096, 4096)
    with Journal(path) as j:
        assert j.moved_aside is not None
        assert j.moved_aside.name.startswith("journal.corrupt-") and j.moved_aside.exists()
        assert j.moved_aside.stat().st_size == size  # kept, untouched, for a person
        assert j.scan_count() == 0
        j.append(make_reading("c", T0, 1))
        assert j.scan_count() == 1
    lines = [r for r in caplog.records if "moved aside" in r.getMessage()]
    assert len(lines) == 1 and "\n" not in lines[0].getMessage()
    with Journal(path) as j:  # the new journal is healthy: not moved again
        assert j.moved_aside is None and j.scan_count() == 1


def test_damage_found_while_running_is_a_lasting_fault(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Damage after start: maintenance finds it; it is reported once and stays reported."""
    path = tmp_path / JOURNAL_FILE
    filled_journal(path, 300)  # closed: every row is in the main file
    corrupt(path, path.stat().st_size // 2 // 4096 * 4096)
    # check=False: as if the damage happened after the start-up check.
    with Journal(path, maintenance_interval_s=0.2, check=False) as j:
        wait_for(lambda: j.faults.current is not None, 30, "damage detected")
        fault = j.faults.current
        assert fault is not None and fault.reason == "corrupt"
        assert "restart odpm serve to move it aside" in fault.describe()
        for i in range(5):  # appends to undamaged pages still work, the fault stays
            j.append(make_reading("c", T0 + timedelta(seconds=1000 + i), i))
        time.sleep(1.0)  # several more maintenance passes fail
        assert j.faults.current is not None and j.faults.current.reason == "corrupt"
    reports = [r for r in caplog.records if "journal is damaged" in r.getMessage()]
    assert len(reports) == 1


def test_serve_on_a_damaged_journal_runs_and_health_says_so(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / JOURNAL_FILE).write_bytes(b"this is not an SQLite file" * 200)
    svc = ServeProcess(tmp_path, ["--simulate", "1", "--data-dir", str(data)])
    try:
        body = wait_for(
            lambda: (h := svc.health())["status"] == "degraded" and h, 60, "health degraded"
        )
        assert any("moved aside to journal.corrupt-" in r for r in body["reasons"])
        wait_for(lambda: journal_scans(data / JOURNAL_FILE) > 2, 30, "scans in the new journal")
        assert svc.terminate() == 0
    finally:
        svc.close()
    assert len(list(data.glob("journal.corrupt-*.sqlite3"))) == 1
    assert "Traceback" not in svc.log


def serve_once(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "odpm", "serve", "--no-api", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "ODPM_CONFIG": ""},
    )


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A data dir holding a journal, then made read-only: a read-only tmpfs remount as
    root (root ignores permission bits), else mode 0555."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    root = os.geteuid() == 0
    if root:
        r = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)], capture_output=True
        )
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs as root here: {r.stderr.decode().strip()}")
    data = mnt / "data"
    filled_journal(data / JOURNAL_FILE, 3)
    try:
        if root:
            subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        else:
            data.chmod(0o555)
        yield data
    finally:
        if root:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
        else:
            data.chmod(0o755)


def test_read_only_data_dir_is_one_line_and_exit_2(read_only_dir: Path) -> None:
    r = serve_once("--simulate", "1", "--data-dir", str(read_only_dir))
    assert r.returncode == 2, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if "odpm serve: error:" in ln]
    assert len(errors) == 1 and str(read_only_dir) in errors[0]
    assert "writable" in errors[0]
    assert "Traceback" not in r.stderr


def test_second_serve_on_one_data_dir_is_refused_naming_the_holder(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = ServeProcess(tmp_path, ["--simulate", "1", "--data-dir", str(data)])
    try:
        wait_for(lambda: first.health()["status"] == "ok", 60, "first service up")
        r = serve_once("--simulate", "1", "--data-dir", str(data))
        assert r.returncode == 2 and "Traceback" not in r.stderr
        assert f"in use by pid {first.proc.pid}" in r.stderr and "odpm" in r.stderr
        # kill -9 releases the lock (the kernel drops it with the process).
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(10)
    finally:
        first.close()
    second = ServeProcess(tmp_path, ["--simulate", "1", "--data-dir", str(data)])
    try:
        wait_for(lambda: second.health()["status"] == "ok", 60, "second service up")
        assert (data / LOCK_FILE).read_text().strip() == str(second.proc.pid)
        assert second.terminate() == 0
    finally:
        second.close()


def test_wal_stays_bounded_and_max_bytes_counts_it(tmp_path: Path) -> None:
    """SQLite's default let the WAL reach 3-4 MB before a checkpoint."""
    path = tmp_path / JOURNAL_FILE
    wal = path.with_name(path.name + "-wal")
    biggest = 0
    with Journal(path, maintenance_interval_s=3600) as j:
        assert j.wal_limit_bytes == WAL_LIMIT_BYTES  # a large disk: the 4 MB bound
    # max_bytes = 8 MB bounds the WAL to 1 MB: cheaper to cross in a test than 4 MB.
    with Journal(path, max_bytes=8_000_000, maintenance_interval_s=3600) as j:
        limit = j.wal_limit_bytes
        assert limit == 1_000_000
        reader = j.read_scans(0, 1)  # a reader connection exists, as the forwarder's does
        assert reader == []
        for i in range(1500):  # ~2.4 MB of rows, past the bound
            j.append(make_reading("w", T0 + timedelta(seconds=i), i))
            if i % 25 == 0 and wal.exists():
                biggest = max(biggest, wal.stat().st_size)
    assert limit * 0.5 < biggest <= limit * 1.1, biggest

    max_bytes = 1_500_000
    with Journal(path, max_bytes=max_bytes, maintenance_interval_s=3600) as j:
        j.run_maintenance()
        st = j.stats()
        assert 0 < st.used_bytes <= max_bytes
        assert wal.stat().st_size <= j.wal_limit_bytes * 1.25
        assert j.scan_count() < 1500


def test_wal_bound_follows_the_disk_and_max_bytes() -> None:
    mb = 1 << 20
    assert wal_limit_bytes(2_000_000_000, 100_000 * mb) == WAL_LIMIT_BYTES
    assert wal_limit_bytes(2_000_000_000, 3 * mb) == WAL_LIMIT_MIN_BYTES  # a 3 MB disk
    assert wal_limit_bytes(2_000_000_000, 32 * mb) == 2 * mb
    assert wal_limit_bytes(1_000_000, 100_000 * mb) == 125_000  # max_bytes / 8


def test_history_from_a_damaged_journal_is_503_not_500(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from api.app import create_app
    from odpm.config import Settings, StorageConfig
    from odpm.service import Service
    from odpm.storage.history import JournalHistory

    path = tmp_path / JOURNAL_FILE
    filled_journal(path, 300)
    corrupt(path, path.stat().st_size // 2 // 4096 * 4096)
    journal = Journal(path, check=False, maintenance_interval_s=3600)
    service = Service(
        Settings(storage=StorageConfig(data_dir=tmp_path)),
        journal=journal,
        history=JournalHistory(journal),
        acquisition=False,
    )
    with TestClient(create_app(service)) as c:
        start = T0.isoformat().replace("+00:00", "Z")
        end = (T0 + timedelta(seconds=300)).isoformat().replace("+00:00", "Z")
        r = c.get(f"/api/v1/devices/c/channels/3/history?start={start}&end={end}&every=1s")
        assert r.status_code == 503, r.text
        assert "journal unreadable" in r.json()["detail"]
