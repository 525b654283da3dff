"""Acceptance: an influxd outage and a kill -9 of the writer lose nothing and duplicate nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from odpm.config import InfluxConfig
from odpm.storage import Forwarder, Journal
from odpm.storage.journal import time_to_us
from tests.support.influxd import InfluxServer
from tests.support.storage_writer import CHANNELS, make_reading

pytestmark = [pytest.mark.influx, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]


def count(server: InfluxServer, db: str, influxql: str) -> int:
    series = server.query(influxql, db=db)["results"][0].get("series", [])
    return int(series[0]["values"][0][1]) if series else 0


def scan_times(server: InfluxServer, db: str) -> list[int]:
    series = server.query('SELECT "lit_channels" FROM "scan"', db=db)["results"][0].get("series")
    return [v[0] for v in series[0]["values"]] if series else []


def test_outage_every_reading_arrives_once(own_influxd: InfluxServer, tmp_path: Path) -> None:
    db = "odpm"
    own_influxd.create_database(db)
    rate_hz = 10.0
    stop = threading.Event()
    appended: list[int] = []

    with Journal(tmp_path / "j.sqlite3") as journal:
        fwd = Forwarder(
            journal,
            InfluxConfig(url=own_influxd.url, database=db, batch_lines=1000, timeout_s=2),
            backoff_initial_s=0.2,
            backoff_max_s=2.0,
            poll_interval_s=0.05,
        )

        def produce() -> None:
            t = datetime.now(UTC)
            i = 0
            while not stop.is_set():
                appended.append(journal.append(make_reading("out", t, i)))
                i += 1
                t += timedelta(seconds=1 / rate_hz)
                stop.wait(1 / rate_hz)

        producer = threading.Thread(target=produce)
        with fwd:
            producer.start()
            try:
                time.sleep(3)
                assert fwd.stats.forwarded_rows > 0
                own_influxd.kill()
                time.sleep(30)
                during = fwd.stats
                assert during.state == "backoff" and during.backlog_rows > 0
                assert during.oldest_unforwarded_age_s is not None
                assert during.oldest_unforwarded_age_s > 20
                own_influxd.start()
                time.sleep(2)
            finally:
                stop.set()
                producer.join(timeout=10)
            assert fwd.wait_drained(60)
            st = fwd.stats
        assert st.retries > 0 and st.quarantined_batches == 0
    scans = len(appended)
    assert scans > 300
    assert count(own_influxd, db, 'SELECT count("present") FROM "channel"') == scans * CHANNELS
    assert len(scan_times(own_influxd, db)) == scans


@pytest.fixture
def writer_proc(tmp_path: Path) -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=10)


def _start_writer(journal: Path, server: InfluxServer, db: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.support.storage_writer", str(journal), server.url, db, "50"],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def _read_committed(p: subprocess.Popen[str], n: int, out: list[tuple[int, int]]) -> None:
    assert p.stdout is not None
    while len(out) < n:
        line = p.stdout.readline()
        assert line, "writer exited early"
        sid, t = line.split()
        out.append((int(sid), int(t)))


def test_kill_9_loses_no_committed_reading(
    influxd: InfluxServer, influx_db: str, tmp_path: Path, writer_proc: list[subprocess.Popen[str]]
) -> None:
    journal_path = tmp_path / "crash.sqlite3"
    committed: list[tuple[int, int]] = []
    first = _start_writer(journal_path, influxd, influx_db)
    writer_proc.append(first)
    _read_committed(first, 150, committed)  # about 3 s at 50 scans/s, forwarder busy
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)

    second = _start_writer(journal_path, influxd, influx_db)
    writer_proc.append(second)
    before = len(committed)
    _read_committed(second, before + 100, committed)
    assert second.stdin is not None and second.stdout is not None
    second.stdin.write("stop\n")
    second.stdin.flush()
    rest = second.stdout.read().split("\n")
    second.wait(timeout=90)
    assert "drained" in rest
    committed += [(int(a), int(b)) for a, b in (x.split() for x in rest if " " in x)]

    # Every committed reading is in InfluxDB, exactly once (and nothing else is).
    with Journal(journal_path) as j:
        stored = j.scan_count("crash")
        times = {time_to_us(s.time) for s in [j.latest("crash")] if s}
    influx_times = scan_times(influxd, influx_db)
    assert len(influx_times) == len(set(influx_times)) == stored
    assert {t for _, t in committed} <= set(influx_times)
    assert times <= set(influx_times)
    assert count(influxd, influx_db, 'SELECT count("present") FROM "channel"') == stored * CHANNELS
    assert len({sid for sid, _ in committed}) == len(committed)
