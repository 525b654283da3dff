"""End to end: ``python -m odpm serve --simulate 2`` as a real process (real uvicorn) with a
real influxd: devices run, /latest has 80 channels, SSE delivers readings, history comes
back from InfluxDB, /metrics parses, SIGTERM stops it cleanly with every reading forwarded."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.influxd import InfluxServer, free_port
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.influx, pytest.mark.slow]


@pytest.fixture
def served(
    tmp_path: Path, influxd: InfluxServer, influx_db: str
) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    port = free_port()
    env = {**os.environ, "ODPM_STORAGE__INFLUX__DATABASE": influx_db, "ODPM_CONFIG": ""}
    cmd = [
        sys.executable, "-m", "odpm", "serve", "--simulate", "2", "--port", str(port),
        "--influx-url", influxd.url, "--data-dir", str(tmp_path / "data"),
    ]  # fmt: skip
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    try:
        yield proc, f"http://127.0.0.1:{port}", tmp_path
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        log.close()


def test_serve_end_to_end(
    served: tuple[subprocess.Popen[bytes], str, Path], influxd: InfluxServer, influx_db: str
) -> None:
    proc, base, tmp = served
    with httpx.Client(base_url=base, timeout=5.0) as http:

        def both_running() -> bool:
            r = http.get("/api/v1/health")
            return r.status_code == 200 and set(r.json()["devices"].values()) == {"running"}

        wait_for(both_running, 20, "both devices running")

        for dev in ("sim1", "sim2"):

            def latest_channels(dev: str = dev) -> Any:  # decoded JSON; None until a reading
                return http.get(f"/api/v1/devices/{dev}/latest").json().get("channels")

            latest = wait_for(latest_channels, 10, f"{dev} latest")
            assert len(latest) == 80

        # Live stream: a few reading events, each a full reading.
        events: list[str] = []
        with http.stream("GET", "/api/v1/devices/sim2/stream", timeout=10.0) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            for line in r.iter_lines():
                if line.startswith("event: reading"):
                    events.append(line)
                if len(events) >= 3:
                    break
        assert len(events) == 3

        # History from InfluxDB, once the forwarder has shipped something.
        def history_points() -> list[dict[str, Any]]:
            r = http.get("/api/v1/devices/sim1/channels/10/history", params={"every": "1s"})
            assert r.status_code == 200, r.text
            pts: list[dict[str, Any]] = r.json()["points"]
            return pts

        points = wait_for(history_points, 15, "history points from InfluxDB")
        assert all(p["power_dbm_mean"] is not None for p in points if p["samples"])
        direct = influxd.query(
            "SELECT count(power_dbm) FROM channel WHERE device='sim1' AND channel='10'",
            db=influx_db,
        )
        assert _count(direct) > 0, "InfluxDB itself holds the channel points"

        metrics = http.get("/metrics").text
        families = {f.name: f for f in text_string_to_metric_families(metrics)}
        for name in ("odpm_scans", "odpm_device_errors", "odpm_reconnects", "odpm_crc_failures",
                     "odpm_lost_frames", "odpm_journal_backlog_rows", "odpm_forwarder_lag_seconds",
                     "odpm_http_request_duration_seconds"):  # fmt: skip
            assert name in families, name

    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(15)
    took_s = time.monotonic() - started
    log = (tmp / "serve.log").read_text()
    assert rc == 0, log[-3000:]
    assert took_s < 10, f"shutdown took {took_s:.1f} s"

    # Nothing lost: every committed journal row is in InfluxDB, once.
    with sqlite3.connect(tmp / "data" / "journal.sqlite3") as db:
        journal = dict(db.execute("SELECT device, count(*) FROM scans GROUP BY device").fetchall())
    assert set(journal) == {"sim1", "sim2"} and min(journal.values()) >= 3
    for dev, n in journal.items():
        rows = influxd.query(
            f"SELECT count(lit_channels) FROM scan WHERE device='{dev}'", db=influx_db
        )
        assert _count(rows) == n, (dev, rows)
        rows = influxd.query(
            f"SELECT count(present) FROM channel WHERE device='{dev}'", db=influx_db
        )
        assert _count(rows) == n * 80, (dev, rows)


def _count(result: Any) -> int:
    """The single count of an InfluxQL ``SELECT count(...)`` answer (0 when no series)."""
    series = result["results"][0].get("series") or [{"values": [[0, 0]]}]
    return int(series[0]["values"][0][1])
