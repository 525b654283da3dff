"""Two machines' worth of ``odpm serve``, as real processes on a real influxd: an agent
(``--simulate 1 --no-api``, trace mode) writes; an API replica (``--no-acquisition``, no
``[[devices]]``, no journal) finds the device in InfluxDB and serves its latest reading and
the agent's alarms (raised by a threshold every simulated channel is below)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from odpm.config import StorageConfig
from odpm.models import AlarmEvent
from odpm.storage.journal import Journal
from tests.support.influxd import InfluxServer, free_port
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.influx, pytest.mark.slow]


def _scan_count(influxd: InfluxServer, db: str) -> int:
    got = influxd.query("SELECT count(lit_channels) FROM scan WHERE device='sim1'", db=db)
    series = got["results"][0].get("series")
    return int(series[0]["values"][0][1]) if series else 0


#: The agent's thresholds: OSNR low at 40 dB, above any simulated channel's OSNR.
AGENT_CONFIG = "[alarms]\nosnr_low_db = 40\n"

AlarmKey = tuple[str, str, int | None, datetime]


def _journal_alarms(events: list[AlarmEvent]) -> tuple[set[AlarmKey], set[AlarmKey]]:
    """(active, all events) from the journal's events, in the API's terms; active is the
    replay of every event, oldest first (what the agent's own map holds)."""
    active: dict[tuple[str, str, int | None], AlarmEvent] = {}
    for e in sorted(events, key=lambda e: e.time):
        if e.active:
            active[(e.device_id, e.kind.value, e.channel)] = e
        else:
            active.pop((e.device_id, e.kind.value, e.channel), None)

    def key(e: AlarmEvent) -> AlarmKey:
        return (e.device_id, e.kind.value, e.channel, e.time)

    return {key(e) for e in active.values()}, {key(e) for e in events}


def _api_alarms(got: list[dict[str, Any]]) -> set[AlarmKey]:
    return {(a["device"], a["kind"], a["channel"], datetime.fromisoformat(a["time"])) for a in got}


class _Procs:
    """Started ``odpm`` processes, killed at the end whatever happened."""

    def __init__(self, tmp: Path, env: dict[str, str]) -> None:
        self.tmp, self.env = tmp, env
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = (self.tmp / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "odpm", "serve", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.tmp,
        )
        log.close()
        self.procs.append(proc)
        return proc

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text()[-3000:]

    def kill_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)


@pytest.fixture
def procs(tmp_path: Path, influx_db: str) -> Iterator[_Procs]:
    env = {**os.environ, "ODPM_STORAGE__INFLUX__DATABASE": influx_db, "ODPM_CONFIG": ""}
    p = _Procs(tmp_path, env)
    try:
        yield p
    finally:
        p.kill_all()


def test_replica_serves_devices_and_latest_from_influxdb(
    procs: _Procs, influxd: InfluxServer, influx_db: str, tmp_path: Path
) -> None:
    agent_data = tmp_path / "agent"
    (tmp_path / "agent.toml").write_text(AGENT_CONFIG)
    agent = procs.start(
        "agent", "--config", str(tmp_path / "agent.toml"),
        "--simulate", "1", "--no-api", "--simulate-interval-s", "0.3",
        "--influx-url", influxd.url, "--data-dir", str(agent_data),
    )  # fmt: skip
    wait_for(lambda: _scan_count(influxd, influx_db) >= 2, 30, "the agent's scans in InfluxDB")

    port = free_port()
    replica = procs.start(
        "replica", "--no-acquisition", "--port", str(port), "--influx-url", influxd.url,
        "--data-dir", str(tmp_path / "replica"),
    )  # fmt: skip
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5.0) as http:
        wait_for(lambda: http.get("/api/v1/health").status_code == 200, 20, "replica ready")
        devices = http.get("/api/v1/devices").json()
        assert [(d["id"], d["state"]) for d in devices] == [("sim1", "replica")]
        latest = http.get("/api/v1/devices/sim1/latest").json()
        assert len(latest["channels"]) == 80
        # --simulate-mode defaults to trace: OSNR is there.
        assert latest["mode"] == "trace" and latest["min_osnr_db"] is not None
        assert any(c["osnr_db"] is not None for c in latest["channels"])

        # Stop the agent: on a clean stop it forwards its last reading, which the
        # replica then serves as it is in the agent's journal.
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(15) == 0, procs.log("agent")
        with Journal.from_config(StorageConfig(data_dir=agent_data)) as journal:
            last = journal.latest("sim1")
            events = journal.alarm_events(limit=10_000)
        assert last is not None
        assert len(events) < 10_000
        agent_active, agent_events = _journal_alarms(events)
        assert any(kind == "osnr_low" for _, kind, _, _ in agent_active), agent_active
        stored = last.to_dict()

        def replica_has_last() -> dict[str, Any] | None:
            got: dict[str, Any] = http.get("/api/v1/devices/sim1/latest").json()
            same = datetime.fromisoformat(got["time"]) == datetime.fromisoformat(stored["time"])
            return got if same else None

        served = wait_for(replica_has_last, 20, "the agent's last reading on the replica")
        assert served is not None  # wait_for returns only truthy results
        for key in ("mode", "lit_channels", "total_power_dbm", "min_osnr_db", "tilt_db"):
            assert served[key] == pytest.approx(stored[key], abs=1e-3), key
        for a, b in zip(served["channels"], stored["channels"], strict=True):
            assert (a["channel"], a["present"], a["quality"]) == (
                b["channel"],
                b["present"],
                b["quality"],
            )
            assert a["frequency_thz"] == pytest.approx(b["frequency_thz"], abs=1e-6)
            for k in ("power_dbm", "signal_power_dbm", "osnr_db", "offset_ghz"):
                assert (a[k] is None) == (b[k] is None), (a["channel"], k)
                if a[k] is not None:
                    assert a[k] == pytest.approx(b[k], abs=1.1e-3), (a["channel"], k)

        # Alarms: the replica's active ones (rebuilt every refresh) are the agent's, and
        # its recent events are the agent's journal's.
        served_active: set[AlarmKey] = set()

        def replica_active() -> bool:
            got = http.get("/api/v1/alarms", params={"active": "true"})
            assert got.status_code == 200, got.text
            body: dict[str, Any] = got.json()
            assert body["recent"] == []
            served_active.clear()
            served_active.update(_api_alarms(body["active"]))
            return served_active == agent_active

        with contextlib.suppress(AssertionError):  # the comparison below shows the difference
            wait_for(replica_active, 20, "the agent's active alarms on the replica")
        assert served_active == agent_active
        recent = http.get("/api/v1/alarms", params={"limit": "10000", "device": "sim1"})
        assert recent.status_code == 200, recent.text
        assert _api_alarms(recent.json()["recent"]) == agent_events

        # Reads only: a replica has no device to scan.
        assert http.post("/api/v1/devices/sim1/scan").status_code in (401, 403)

    replica.send_signal(signal.SIGTERM)
    assert replica.wait(15) == 0, procs.log("replica")
