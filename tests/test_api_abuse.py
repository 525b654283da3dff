"""The HTTP surface under abuse, against a real ``odpm serve`` (real uvicorn, real sockets).

Each test is one hole found by an abuse pass (issue 12): metric labels made of whatever
method a client sends, bodies read before the key is checked, durations that overflow, SSE
clients that disconnect without being noticed, connections that send half a request and
hold it, and reads left open with ``read_requires_key``.
"""

from __future__ import annotations

import http.client
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from odpm.config import hash_api_key
from tests.support.serve_proc import Served, served
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow

#: Short enough for a test, long enough for a loaded machine to send a request in.
READ_TIMEOUT_S = 2.0
METRICS_KEY = "scraper-key"


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """Reads open (the default); power mode at 5 Hz so streams fill client buffers quickly."""
    env = {"ODPM_API__READ_TIMEOUT_S": str(READ_TIMEOUT_S)}
    args = ("--simulate-mode", "power", "--simulate-interval-s", "0.2")
    with served(tmp_path_factory.mktemp("open"), env=env, args=args) as s:
        yield s
    # Abuse is the client's problem: nothing of it may reach the log as a traceback.
    assert "Traceback" not in s.log.read_text(), s.log.read_text()[-5000:]


@pytest.fixture(scope="module")
def locked_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """``read_requires_key = true`` and a separate key for the Prometheus scraper."""
    env = {
        "ODPM_API__READ_REQUIRES_KEY": "true",
        "ODPM_API__METRICS_KEY_SHA256": f'["{hash_api_key(METRICS_KEY)}"]',
    }
    with served(tmp_path_factory.mktemp("locked"), env=env) as s:
        yield s
    assert "Traceback" not in s.log.read_text(), s.log.read_text()[-5000:]


def _metrics(s: Served, headers: dict[str, str] | None = None) -> dict[str, Any]:
    r = httpx.get(f"{s.url}/metrics", headers=headers or {}, timeout=30)
    assert r.status_code == 200, r.text
    return {f.name: f for f in text_string_to_metric_families(r.text)}


def _series(s: Served, family: str) -> set[tuple[tuple[str, str], ...]]:
    """Distinct label sets of ``family`` (buckets, sum and count of one series count once)."""
    fam = _metrics(s)[family]
    return {
        tuple(sorted((k, v) for k, v in sample.labels.items() if k != "le"))
        for sample in fam.samples
    }


def test_made_up_methods_and_paths_do_not_grow_metric_series(open_server: Served) -> None:
    conn = http.client.HTTPConnection(open_server.host, open_server.port, timeout=30)
    try:
        for i in range(1500):
            # A made-up method on a real route (405) and on random paths (404).
            path = "/api/v1/devices" if i % 2 else f"/x/{i}"
            conn.request(f"Z{i:06d}", path)
            r = conn.getresponse()
            r.read()
            assert r.status in (404, 405), (i, r.status)
    finally:
        conn.close()
    series = _series(open_server, "odpm_http_request_duration_seconds")
    assert len(series) < 100, sorted(series)[:20]
    labels = {dict(s)["method"] for s in series}
    assert "other" in labels
    assert not any(m.startswith("Z") for m in labels)
    routes = {dict(s)["route"] for s in series}
    assert not any(r.startswith("/x/") for r in routes), routes


def _send_big_body(s: Served, size: int, results: list[tuple[int, int]]) -> None:
    """PUT ``size`` bytes without a key; record (status, bytes the server let us send)."""
    sock = socket.create_connection((s.host, s.port), timeout=30)
    sent = 0
    try:
        sock.sendall(
            b"PUT /api/v1/devices/sim1/acquisition HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\n" + f"Content-Length: {size}\r\n\r\n".encode()
        )
        chunk = b" " * 65536
        try:
            while sent < size:
                sent += sock.send(chunk[: size - sent])
        except OSError:  # the server answered and closed: what we want
            pass
        data = b""
        try:
            while b"\r\n" not in data:
                more = sock.recv(4096)
                if not more:
                    break
                data += more
        except OSError:
            pass
        status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0
        results.append((status, sent))
    finally:
        sock.close()


def test_big_bodies_without_a_key_are_refused_before_they_are_read(open_server: Served) -> None:
    size = 40 * 1024 * 1024
    before = open_server.rss_bytes()
    results: list[tuple[int, int]] = []
    threads = [
        threading.Thread(target=_send_big_body, args=(open_server, size, results)) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    growth = open_server.rss_bytes("VmHWM") - before
    assert [status for status, _ in results] == [401] * 4, results
    assert growth < 30 * 1024 * 1024, f"RSS grew by {growth / 2**20:.0f} MiB"


def test_a_body_over_the_limit_is_413_with_a_key(open_server: Served) -> None:
    body = b'{"interval_s": 1' + b" " * (2 * 1024 * 1024) + b"}"
    r = httpx.put(
        f"{open_server.url}/api/v1/devices/sim1/acquisition",
        content=body,
        headers={**open_server.auth, "Content-Type": "application/json"},
        timeout=30,
    )
    assert r.status_code == 413, r.text
    assert "max_body_bytes" in r.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"interval_s": 1'
        for _ in range(40):
            yield b" " * 65536
        yield b"}"

    r = httpx.put(
        f"{open_server.url}/api/v1/devices/sim1/acquisition",
        content=chunks(),
        headers={**open_server.auth, "Content-Type": "application/json"},
        timeout=30,
    )
    assert r.status_code == 413, r.text


@pytest.mark.parametrize(
    "params",
    [
        {"every": "200000000d"},
        {"every": "1e400s"},
        {"every": "9" * 400},
        {"start": "0001-01-01T00:00:00Z", "end": "0001-01-01T01:00:00Z"},
        {"start": "9999-12-31T00:00:00Z", "end": "9999-12-31T01:00:00Z"},
        {"end": "9999-12-31T23:59:59Z"},
        {"start": "1000000-01-01T00:00:00Z"},
        {"end": "0.5"},
        {"end": "1970-01-01T00:10:00Z"},
    ],
)
def test_absurd_durations_and_times_are_422(open_server: Served, params: dict[str, str]) -> None:
    r = httpx.get(
        f"{open_server.url}/api/v1/devices/sim1/channels/1/history", params=params, timeout=30
    )
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert detail and detail[0]["loc"][0] == "query", detail


def test_bad_types_in_request_bodies_are_422(open_server: Served) -> None:
    url = f"{open_server.url}/api/v1/devices/sim1/acquisition"
    for body in ({"interval_s": False}, {"interval_s": "1"}, {"averaging": True}):
        r = httpx.put(url, json=body, headers=open_server.auth, timeout=30)
        assert r.status_code == 422, (body, r.text)
    r = httpx.get(f"{open_server.url}/api/v1/devices/sim1", timeout=30)
    assert r.json()["interval_s"] == pytest.approx(0.2)


def test_stream_clients_that_never_read_are_released_when_they_go(open_server: Served) -> None:
    def clients() -> float:
        fam = _metrics(open_server)["odpm_stream_clients"]
        return float(fam.samples[0].value)

    assert clients() == 0
    socks = []
    try:
        for _ in range(60):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.settimeout(30)
            sock.connect((open_server.host, open_server.port))
            sock.sendall(b"GET /api/v1/devices/sim1/stream HTTP/1.1\r\nHost: x\r\n\r\n")
            socks.append(sock)
        wait_for(lambda: clients() == 60, 20, "60 stream clients connected")
        time.sleep(3)  # readings pile up in the kernel buffers nobody reads
    finally:
        for sock in socks:
            sock.close()
    wait_for(lambda: clients() == 0, 10, "stream clients released", poll_s=0.5)


def test_a_half_sent_request_is_closed_within_the_read_timeout(open_server: Served) -> None:
    half_body = (
        b"PUT /api/v1/devices/sim1/acquisition HTTP/1.1\r\nHost: x\r\n"
        + f"Authorization: Bearer {open_server.key}\r\n".encode()
        + b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
    )
    for sent in (b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n", b"", half_body):
        with socket.create_connection((open_server.host, open_server.port), timeout=30) as sock:
            sock.sendall(sent)
            started = time.monotonic()
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                data = b""
            took_s = time.monotonic() - started
        assert not data.startswith(b"HTTP/1.1 2"), data
        assert took_s < READ_TIMEOUT_S + 3, f"{sent!r}: held for {took_s:.1f} s"
        assert took_s > READ_TIMEOUT_S / 2, f"{sent!r}: closed after {took_s:.1f} s"
    # A whole request on time is answered as usual.
    assert httpx.get(f"{open_server.url}/api/v1/health", timeout=30).status_code == 200


def _read_paths(s: Served) -> list[str]:
    """Every documented GET except the live stream, with real path parameters."""
    spec = httpx.get(f"{s.url}/openapi.json", timeout=30).json()
    out = []
    for path, ops in spec["paths"].items():
        if "get" in ops and not path.endswith("/stream"):
            path = path.replace("{device_id}", "sim1")
            out.append(re.sub(r"\{[a-z_]+\}", "1", path))  # {ch}, {trace_id}, {name}...
    assert len(out) >= 7, out
    return out


def test_every_read_but_the_probe_needs_the_key_when_asked(locked_server: Served) -> None:
    s = locked_server
    with httpx.Client(base_url=s.url, timeout=30) as http:
        for path in [*_read_paths(s), "/api/v1/devices/sim1/stream", "/metrics"]:
            if path in ("/api/v1/health", "/api/v1/health/live"):  # the probes
                continue
            r = http.get(path)
            assert r.status_code == 401, (path, r.status_code, r.text)
            assert r.headers["www-authenticate"] == "Bearer"
            r = http.get(path, headers={"Authorization": "Bearer wrong"})
            assert r.status_code == 401, (path, r.status_code)
        for path in _read_paths(s):
            r = http.get(path, headers=s.auth)
            assert r.status_code in (200, 404), (path, r.status_code, r.text)

        # /metrics: the API key or the scraper's own key.
        assert http.get("/metrics", headers=s.auth).status_code == 200
        families = _metrics(s, {"Authorization": f"Bearer {METRICS_KEY}"})
        assert "odpm_scans" in families
        # The scraper's key opens nothing else.
        r = http.get("/api/v1/devices", headers={"Authorization": f"Bearer {METRICS_KEY}"})
        assert r.status_code == 401

        # The probe: status only without a key, the details with it.
        r = http.get("/api/v1/health")
        assert r.status_code == 200
        assert r.json() == {"status": "ok"}
        r = http.get("/api/v1/health", headers=s.auth)
        assert r.status_code == 200
        assert r.json()["devices"] == {"sim1": "running"}


def test_metrics_need_their_key_when_one_is_set_even_with_open_reads(
    tmp_path: Path,
) -> None:
    env = {"ODPM_API__METRICS_KEY_SHA256": f'["{hash_api_key(METRICS_KEY)}"]'}
    with served(tmp_path, env=env) as s:
        assert httpx.get(f"{s.url}/metrics", timeout=30).status_code == 401
        r = httpx.get(
            f"{s.url}/metrics", headers={"Authorization": f"Bearer {METRICS_KEY}"}, timeout=30
        )
        assert r.status_code == 200
        assert httpx.get(f"{s.url}/api/v1/devices", timeout=30).status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/api/v1/devices/sim1/acquisition"),
        ("POST", "/api/v1/devices/sim1/traces/1/analyze"),
    ],
)
def test_a_body_that_is_not_utf8_is_422_naming_the_body(
    open_server: Served, method: str, path: str
) -> None:
    # FastAPI answered a body it could not decode with an undocumented 400
    # ("There was an error parsing the body"); schemathesis found it.
    r = httpx.request(
        method,
        f"{open_server.url}{path}",
        content=b"\xff",
        headers={**open_server.auth, "Content-Type": "application/json"},
        timeout=10,
    )
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["msg"].startswith("body: ")
