"""Storage benchmark: journal append throughput and forwarder ingest into a real influxd.

Each figure is printed beside a baseline measured in the same run on the same
machine:

* journal: scans/s of 80 channels appended by 8 threads (group commit), beside
  one thread and a naive SQLite loop with one commit per scan (target >= 2,000);
* forwarder: points/s from the journal into influxd, beside the raw limit,
  i.e. POSTing the same pre-encoded line protocol in the same batch size with
  a plain httpx client (target: forwarder >= 0.8 x raw).

Run: ``python3 bench/storage.py`` (about a minute; needs ``influxd``).
"""

from __future__ import annotations

import dataclasses
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from odpm.config import InfluxConfig
from odpm.storage import Forwarder, Journal
from odpm.storage.journal import _encode
from tests.support.influxd import InfluxServer
from tests.support.storage_writer import make_reading

T0 = datetime(2024, 3, 1, tzinfo=UTC)
BATCH_LINES = 5000


def bench_journal(root: Path, threads: int, per_thread: int) -> float:
    templates = [make_reading(f"d{k}", T0, k) for k in range(threads)]
    with Journal(root / f"j{threads}.sqlite3") as j:
        barrier = threading.Barrier(threads + 1)

        def work(k: int) -> None:
            barrier.wait()
            for i in range(per_thread):
                j.append(dataclasses.replace(templates[k], time=T0 + timedelta(milliseconds=i)))

        ts = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
        for t in ts:
            t.start()
        barrier.wait()
        t0 = time.perf_counter()
        for t in ts:
            t.join()
        dt = time.perf_counter() - t0
    return threads * per_thread / dt


def bench_naive(root: Path, n: int) -> float:
    """One INSERT + COMMIT per scan, same row encoding and pragmas (WAL, NORMAL)."""
    conn = sqlite3.connect(root / "naive.sqlite3", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(
        "CREATE TABLE scans(id INTEGER PRIMARY KEY, device, time_us, mode, plan, "
        "temperature_c, total_power_dbm, lit_channels, tilt_db, flatness_db, min_osnr_db, "
        "present, quality, power_dbm, signal_power_dbm, osnr_db, offset_ghz)"
    )
    template = make_reading("n", T0, 1)
    t0 = time.perf_counter()
    for i in range(n):
        row, _, _ = _encode(dataclasses.replace(template, time=T0 + timedelta(milliseconds=i)))
        conn.execute("BEGIN")
        conn.execute("INSERT INTO scans VALUES (NULL,?,?,?,1,?,?,?,?,?,?,?,?,?,?,?,?)", row)
        conn.execute("COMMIT")
    dt = time.perf_counter() - t0
    conn.close()
    return n / dt


def fill_journal(path: Path, scans: int) -> None:
    with Journal(path) as j:
        for i in range(scans):
            j.append(make_reading("f", T0 + timedelta(milliseconds=10 * i), i % 50))


def raw_batches(journal_path: Path, url: str) -> list[str]:
    """The forwarder's own encoding of the journal, cut into the same batches."""
    with Journal(journal_path) as j:
        enc = Forwarder(j, InfluxConfig(url=url))
        lines = "".join(enc.encode_scan(s) for s in j.read_scans(0, 10**9)).splitlines(True)
    return ["".join(lines[i : i + BATCH_LINES]) for i in range(0, len(lines), BATCH_LINES)]


def bench_raw(server: InfluxServer, db: str, batches: list[str]) -> float:
    server.create_database(db)
    points = sum(b.count("\n") for b in batches)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        t0 = time.perf_counter()
        for b in batches:
            r = client.post("/write", params={"db": db, "precision": "u"}, content=b.encode())
            r.raise_for_status()
        dt = time.perf_counter() - t0
    return points / dt


def bench_forwarder(server: InfluxServer, db: str, journal_path: Path) -> float:
    server.create_database(db)
    with Journal(journal_path) as j:
        j.set_cursors(scan_id=0)
        # A fresh cursor: rewind by recreating the meta row.
        j._submit(lambda c: c.execute("DELETE FROM meta"))
        fwd = Forwarder(
            j,
            InfluxConfig(url=server.url, database=db, batch_lines=BATCH_LINES),
            poll_interval_s=0.02,
        )
        t0 = time.perf_counter()
        fwd.start()
        ok = fwd.wait_drained(120)
        dt = time.perf_counter() - t0
        points = fwd.stats.forwarded_points
        fwd.stop()
    if not ok:
        raise RuntimeError("forwarder did not drain")
    return points / dt


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        grouped = bench_journal(root, threads=8, per_thread=1000)
        single = bench_journal(root, threads=1, per_thread=2000)
        naive = bench_naive(root, 2000)
        print("journal append, 80 channels per scan")
        print(f"  {'method':<34}{'scans/s':>10}{'x naive':>9}")
        for name, v in (
            ("naive: one commit per scan", naive),
            ("Journal, 1 thread", single),
            ("Journal, 8 threads (group commit)", grouped),
        ):
            print(f"  {name:<34}{v:>10,.0f}{v / naive:>9.2f}")
        print(f"  target >= 2,000 scans/s: {'met' if grouped >= 2000 else 'NOT met'}")

        server = InfluxServer(root / "influxd")
        server.start()
        try:
            jpath = root / "fwd.sqlite3"
            fill_journal(jpath, 3000)
            batches = raw_batches(jpath, server.url)
            raws, fwds = [], []
            for k in range(3):  # alternate, so drift in the machine hits both alike
                raws.append(bench_raw(server, f"raw{k}", batches))
                fwds.append(bench_forwarder(server, f"fwd{k}", jpath))
        finally:
            server.stop()
        raw, fwd = statistics.median(raws), statistics.median(fwds)
        points = sum(b.count("\n") for b in batches)
        print(f"\nforwarder ingest into influxd 1.x ({points:,} points, {BATCH_LINES} lines/POST,")
        print("median of 3 alternating runs)")
        print(f"  {'method':<34}{'points/s':>10}{'x raw':>9}")
        print(f"  {'raw POST of pre-encoded lines':<34}{raw:>10,.0f}{1.0:>9.2f}")
        print(f"  {'Forwarder (journal -> influxd)':<34}{fwd:>10,.0f}{fwd / raw:>9.2f}")
        print(f"  target >= 0.8 x raw: {'met' if fwd >= 0.8 * raw else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
