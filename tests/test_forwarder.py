"""The forwarder against a real influxd (and small local HTTP servers for what it cannot do)."""

from __future__ import annotations

import http.server
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import pytest

from odpm.config import InfluxConfig
from odpm.storage import Forwarder, Journal
from odpm.storage.journal import VALUE_DECIMALS, time_to_us
from tests.support.influxd import InfluxServer
from tests.support.storage_writer import make_reading

pytestmark = pytest.mark.influx

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


class TimingKnobs(TypedDict):
    """The Forwarder's timing keywords, typed so ``**FAST`` checks against its signature."""

    backoff_initial_s: float
    backoff_max_s: float
    poll_interval_s: float


FAST: TimingKnobs = {"backoff_initial_s": 0.05, "backoff_max_s": 0.3, "poll_interval_s": 0.02}


def q(a: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(a, dtype=np.float64), VALUE_DECIMALS)


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal(tmp_path / "j.sqlite3")
    yield j
    j.close()


def rows(server: InfluxServer, db: str, influxql: str) -> list[dict[str, Any]]:
    """A query's rows as dicts (plain InfluxQL over HTTP, independent of our code)."""
    series = server.query(influxql, db=db)["results"][0].get("series", [])
    return [
        {**s.get("tags", {}), **dict(zip(s["columns"], v, strict=True))}
        for s in series
        for v in s["values"]
    ]


def test_round_trip_field_for_field(
    influxd: InfluxServer, influx_db: str, journal: Journal
) -> None:
    readings = [
        make_reading("rt", T0 + timedelta(seconds=i), i, alarms=(i == 3), mode="trace")
        for i in range(10)
    ] + [make_reading("rt", T0 + timedelta(seconds=10), 10, mode="power")]
    for r in readings:
        journal.append(r)
    cfg = InfluxConfig(url=influxd.url, database=influx_db, batch_lines=200)
    with Forwarder(journal, cfg, **FAST) as fwd:
        assert fwd.wait_drained(30)
        st = fwd.stats
    assert st.backlog_rows == 0 and st.forwarded_rows == len(readings)
    assert st.forwarded_batches >= 4  # 200-line batches: one or two scans each

    got = rows(influxd, influx_db, 'SELECT * FROM "channel" WHERE "device"=\'rt\'')
    assert len(got) == len(readings) * 80
    by_key = {(g["time"], g["channel"]): g for g in got}
    for r in readings:
        t = time_to_us(r.time)
        for i, ch in enumerate(r.channel.tolist()):
            g = by_key[(t, f"{ch:02d}")]
            assert g["present"] is bool(r.present[i])
            for name in ("power_dbm", "signal_power_dbm", "osnr_db", "offset_ghz"):
                want = q(getattr(r, name))[i]
                assert (g[name] is None) if np.isnan(want) else g[name] == want, (name, ch)

    scans = rows(influxd, influx_db, 'SELECT * FROM "scan" GROUP BY "mode"')
    assert sorted(s["time"] for s in scans) == sorted(time_to_us(r.time) for r in readings)
    for s, r in zip(sorted(scans, key=lambda s: s["time"]), readings, strict=True):
        assert s["mode"] == r.mode and s["lit_channels"] == r.lit_channels
        assert s["total_power_dbm"] == r.total_power_dbm and s["tilt_db"] == r.tilt_db
        assert s["temperature_c"] == r.temperature_c
        assert s["min_osnr_db"] == (None if np.isnan(r.min_osnr_db) else r.min_osnr_db)

    alarms = rows(influxd, influx_db, 'SELECT * FROM "alarm" GROUP BY "channel", "kind"')
    want_alarms = {
        (
            a.kind.value,
            "all" if a.channel is None else f"{a.channel:02d}",
            a.active,
            a.value,
            a.threshold,
        )
        for a in readings[3].alarms
    }
    assert {(a["kind"], a["channel"], a["active"], a["value"], a["threshold"]) for a in alarms} == (
        want_alarms
    )


def test_resumes_from_cursor_without_resending(
    influxd: InfluxServer, influx_db: str, tmp_path: Path
) -> None:
    cfg = InfluxConfig(url=influxd.url, database=influx_db, batch_lines=100)
    sent: list[str] = []

    class Counting:
        def __init__(self) -> None:
            from odpm.storage import V1Writer

            self.inner = V1Writer(cfg)

        def write(self, body: str) -> None:
            self.inner.write(body)
            sent.append(body)

        def close(self) -> None:
            self.inner.close()

    with Journal(tmp_path / "j.sqlite3") as j:
        for i in range(5):
            j.append(make_reading("cur", T0 + timedelta(seconds=i), i))
        with Forwarder(j, cfg, writer=Counting(), **FAST) as f:
            assert f.wait_drained(20)
    first_run = len(sent)
    with Journal(tmp_path / "j.sqlite3") as j:
        for i in range(5, 8):
            j.append(make_reading("cur", T0 + timedelta(seconds=i), i))
        with Forwarder(j, cfg, writer=Counting(), **FAST) as f:
            assert f.wait_drained(20)
    resent = "".join(sent[first_run:])
    assert f" {time_to_us(T0 + timedelta(seconds=4))}\n" not in resent
    assert f" {time_to_us(T0 + timedelta(seconds=5))}\n" in resent
    (count,) = rows(influxd, influx_db, 'SELECT count("total_power_dbm") FROM "scan"')
    assert count["count"] == 8


def test_bad_batch_is_quarantined_and_later_batches_arrive(
    influxd: InfluxServer, influx_db: str, journal: Journal
) -> None:
    # A field type conflict: power_dbm is already a string in this shard (same week).
    t_us = time_to_us(T0 - timedelta(seconds=1))
    influxd.write(f'channel,device=bad,channel=01 power_dbm="oops" {t_us}', influx_db)
    for i in range(3):
        journal.append(make_reading("bad", T0 + timedelta(seconds=i), i))
    # Field types are per measurement and shard (7 days here): later data, another shard.
    for i in range(4):
        journal.append(make_reading("good", T0 + timedelta(days=14, seconds=i), i))
    cfg = InfluxConfig(url=influxd.url, database=influx_db, batch_lines=81)  # one scan a batch
    with Forwarder(journal, cfg, **FAST) as fwd:
        assert fwd.wait_drained(30)
        st = fwd.stats
    assert st.quarantined_batches == 3 and "field type conflict" in (st.last_error or "")
    quarantined = journal.quarantined()
    assert len(quarantined) == 3
    assert all(b.status == 400 and "field type conflict" in b.message for b in quarantined)
    assert all(b.line_count == 81 and "device=bad" in b.lines for b in quarantined)
    (good,) = rows(
        influxd, influx_db, 'SELECT count("present") FROM "channel" WHERE "device"=\'good\''
    )
    assert good["count"] == 4 * 80


class Recorder(http.server.BaseHTTPRequestHandler):
    """Answers with ``server.answer(handler)`` -> status; records each request."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        srv: Any = self.server
        srv.requests.append((self.command, self.path, dict(self.headers), body))
        status, text = srv.answer(self)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fake_server() -> Iterator[Callable[[Callable[[Any], tuple[int, bytes]]], Any]]:
    servers: list[http.server.ThreadingHTTPServer] = []

    def make(answer: Callable[[Any], tuple[int, bytes]]) -> Any:
        srv: Any = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
        srv.requests = []
        srv.answer = answer
        srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return srv

    yield make
    for s in servers:
        s.shutdown()
        s.server_close()


def test_v2_dialect_request_shape(fake_server: Any, journal: Journal) -> None:
    """No InfluxDB 2.x server exists on these machines (Debian ships 1.6.7, whose
    /api/v2/write answers 404), so a local HTTP server checks what the v2 dialect sends."""
    srv = fake_server(lambda h: (204, b""))
    journal.append(make_reading("v2dev", T0, 1))
    cfg = InfluxConfig(
        url=srv.url, dialect="v2", org="lab", bucket="optics", token="s3cret", batch_lines=5000
    )
    with Forwarder(journal, cfg, **FAST) as fwd:
        assert fwd.wait_drained(20)
    assert len(srv.requests) == 1
    method, path, headers, body = srv.requests[0]
    url = urllib.parse.urlparse(path)
    params = urllib.parse.parse_qs(url.query)
    assert method == "POST" and url.path == "/api/v2/write"
    assert params["org"] == ["lab"] and params["bucket"] == ["optics"]
    assert params["precision"] == ["us"]
    assert headers["Authorization"] == "Token s3cret"
    lines = body.decode().splitlines()
    assert len(lines) == 81
    assert lines[0].startswith("channel,device=v2dev,channel=01 power_dbm=")
    assert lines[-1].startswith("scan,device=v2dev,mode=trace ")
    assert all(line.endswith(f" {time_to_us(T0)}") for line in lines)


@pytest.mark.parametrize("dialect", ["v1", "v2"])
def test_error_classes(fake_server: Any, journal: Journal, dialect: str) -> None:
    """503 -> backoff and retry; 401 -> auth_failed until fixed; 400 -> quarantine."""
    script = iter([503, 503, 401, 401, 204, 400, 204])
    srv = fake_server(lambda h: (next(script, 204), b'{"error":"nope"}'))
    cfg = InfluxConfig(  # no CREATE DATABASE: it would take the first scripted answer
        url=srv.url,
        dialect=dialect,
        org="lab",
        token="t",
        batch_lines=81,
        database="x",
        create_database=False,
    )
    for i in range(3):
        journal.append(make_reading("e", T0 + timedelta(seconds=i), i))
    states: set[str] = set()
    with Forwarder(journal, cfg, auth_retry_s=0.2, **FAST) as fwd:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            st = fwd.stats
            states.add(st.state)
            if st.backlog_rows == 0:
                break
            time.sleep(0.01)
        st = fwd.stats
    assert st.backlog_rows == 0
    assert "auth_failed" in states and "backoff" in states
    assert st.retries == 4 and st.quarantined_batches == 1 and st.forwarded_rows == 2
    assert journal.quarantined()[0].status == 400
    assert "nope" in journal.quarantined()[0].message
    if dialect == "v1":
        assert srv.requests[0][1].startswith("/write?") and "precision=u" in srv.requests[0][1]
        assert srv.requests[0][2]["Authorization"] == "Token t"


def test_v1_basic_auth_and_retention_policy(fake_server: Any, journal: Journal) -> None:
    srv = fake_server(lambda h: (204, b""))
    journal.append(make_reading("b", T0, 1))
    cfg = InfluxConfig(
        url=srv.url, database="odpm", retention_policy="week", username="u", password="p"
    )
    with Forwarder(journal, cfg, **FAST) as fwd:
        assert fwd.wait_drained(20)
    # First the CREATE DATABASE of a v1 forwarder's start, then the write.
    create, write = srv.requests
    assert urllib.parse.urlparse(create[1]).path == "/query"
    assert create[2]["Authorization"].startswith("Basic ")
    _, path, headers, _ = write
    assert urllib.parse.parse_qs(urllib.parse.urlparse(path).query) == {
        "db": ["odpm"],
        "rp": ["week"],
        "precision": ["u"],
    }
    assert headers["Authorization"].startswith("Basic ")


def test_batch_encoding_equals_row_by_row(journal: Journal) -> None:
    """The vectorised batch path writes exactly the bytes of encoding each row alone."""
    readings = [
        make_reading("a", T0, 1, alarms=True),
        make_reading("b b", T0 + timedelta(seconds=1), 2, mode="power"),
        make_reading("a", T0 + timedelta(seconds=2), 3, channels=5, dark=(1, 5)),
        make_reading("c", T0 + timedelta(seconds=3), 4, alarms=True),
    ]
    for r in readings:
        journal.append(r)
    scans = journal.read_scans(0, 100)
    fwd = Forwarder(journal, InfluxConfig(url="http://127.0.0.1:9"))
    try:
        body = fwd.encode_scans(scans)
        assert body == "".join(fwd.encode_scan(s) for s in scans)
        lines = body.splitlines()
        assert len(lines) == 80 + 1 + 2 + 80 + 1 + 5 + 1 + 80 + 1 + 2
        assert lines[80].startswith("scan,device=a,mode=trace ")
        assert lines[81].startswith("alarm,device=a,")
        assert lines[83].startswith("channel,device=b\\ b,channel=01 power_dbm=")
        assert all(
            line.endswith(f" {time_to_us(T0 + timedelta(seconds=2))}") for line in lines[164:170]
        )
    finally:
        fwd.stop()
