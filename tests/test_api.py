"""Route tests: every endpoint, the auth matrix and every error, on a service with real
simulated devices (loopback TCP, the real driver, pipeline and journal)."""

from __future__ import annotations

import collections
import csv
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from api.auth import key_matches
from odpm.config import ApiConfig, InfluxConfig, Settings, StorageConfig, hash_api_key
from odpm.service import Service
from odpm.storage.journal import time_to_us, us_to_time

KEY = "lab-key-1"
OTHER_KEY = "lab-key-2"
AUTH = {"Authorization": f"Bearer {KEY}"}
V1 = "/api/v1"


def _settings(data_dir: Path, **api: Any) -> Settings:
    return Settings(
        storage=StorageConfig(data_dir=data_dir),
        api=ApiConfig(**({"api_key_sha256": [hash_api_key(OTHER_KEY), hash_api_key(KEY)]} | api)),
    )


def _wait(predicate: Any, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("api-journal")


@pytest.fixture(scope="module")
def client(data_dir: Path) -> Iterator[TestClient]:
    service = Service.from_settings(
        _settings(data_dir), simulate=2, simulate_options={"interval_s": 0.2}
    )
    with TestClient(create_app(service)) as c:
        _wait(
            lambda: all(
                c.get(f"{V1}/devices/{d}/latest").status_code == 200 for d in ("sim1", "sim2")
            )
        )
        yield c


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


# --- reads -----------------------------------------------------------------------------


def test_health_reports_ready_with_device_states(client: TestClient) -> None:
    r = client.get(f"{V1}/health")
    assert r.status_code == 200
    body = r.json()
    assert body["ready"] is True and body["status"] == "ok"
    assert set(body["devices"]) == {"sim1", "sim2"}
    assert body["storage"]["journal_open"] is True
    assert body["storage"]["influx_configured"] is False


def test_devices_show_identity_state_and_counters(client: TestClient) -> None:
    r = client.get(f"{V1}/devices")
    assert r.status_code == 200
    devices = {d["id"]: d for d in r.json()}
    assert set(devices) == {"sim1", "sim2"}
    one = client.get(f"{V1}/devices/sim1").json()
    assert one["identity"].startswith("PPI,ODPM-96,SIM00001")
    assert one["state"] == "running"
    assert one["address"].startswith("socket://127.0.0.1:")
    assert one["counters"]["scans"] >= 1
    assert one["channels"] == 80


def test_latest_has_80_channels_with_units_in_names(client: TestClient) -> None:
    body = client.get(f"{V1}/devices/sim2/latest").json()
    assert body["device"] == "sim2"
    assert [c["channel"] for c in body["channels"]] == list(range(1, 81))
    lit = [c for c in body["channels"] if c["present"]]
    assert lit and all(-40 < c["power_dbm"] < 10 for c in lit)
    assert body["lit_channels"] == len(lit)
    assert body["total_power_dbm"] is not None


def test_unknown_device_is_404_everywhere(client: TestClient) -> None:
    for path in (
        "/devices/nope",
        "/devices/nope/latest",
        "/devices/nope/trace",
        "/devices/nope/stream",
        "/devices/nope/channels/3/history",
    ):
        r = client.get(V1 + path)
        assert r.status_code == 404, path
        assert "nope" in r.json()["detail"]
    assert client.get(f"{V1}/alarms?device=nope").status_code == 404
    assert client.post(f"{V1}/devices/nope/scan", headers=AUTH).status_code == 404
    assert client.put(f"{V1}/devices/nope/acquisition", json={}, headers=AUTH).status_code == 404


def test_scan_now_returns_the_reading_and_caches_the_trace(client: TestClient) -> None:
    # Paused, so no scheduled power scan lands between the requested trace and the GET
    # (/trace is 404 once the newest scan is a power reading); requests are still served.
    control = f"{V1}/devices/sim1/acquisition"
    assert client.put(control, json={"running": False}, headers=AUTH).status_code == 200
    try:
        before = client.get(f"{V1}/devices/sim1").json()["counters"]["scans"]
        r = client.post(f"{V1}/devices/sim1/scan", json={"mode": "trace"}, headers=AUTH)
        assert r.status_code == 200
        reading = r.json()
        assert reading["mode"] == "trace" and len(reading["channels"]) == 80
        assert reading["min_osnr_db"] is not None  # a trace measures OSNR, ports do not
        assert client.get(f"{V1}/devices/sim1").json()["counters"]["scans"] > before
        trace = client.get(f"{V1}/devices/sim1/trace").json()
    finally:
        client.put(control, json={"running": True}, headers=AUTH)
    assert (
        trace["time"] == reading["time"].replace("+00:00", "Z") or trace["time"] == reading["time"]
    )
    assert len(trace["frequency_thz"]) == len(trace["power_dbm"]) > 1000
    assert trace["rbw_ghz"] > 0
    assert trace["frequency_thz"] == sorted(trace["frequency_thz"])


def test_trace_is_404_until_a_trace_was_taken(client: TestClient) -> None:
    r = client.get(f"{V1}/devices/sim2/trace")
    assert r.status_code == 404
    assert "trace" in r.json()["detail"]


def test_history_json_and_csv_from_the_journal(client: TestClient) -> None:
    # The fixture guarantees one reading per device, not the several this test
    # counts: wait for them rather than rely on how long earlier tests took.
    _wait(lambda: client.get(f"{V1}/devices/sim2").json()["readings_stored"] >= 3)
    # A window closed at the newest stored reading: scans landing meanwhile
    # cannot change the answer between the JSON and the CSV request.  A device's
    # readings are stored in time order, so every one up to `end` is committed.
    newest = datetime.fromisoformat(client.get(f"{V1}/devices/sim2/latest").json()["time"])
    end = newest + timedelta(microseconds=1)
    start = end - timedelta(minutes=5)
    q = f"start={_iso(start)}&end={_iso(end)}&every=2s"
    r = client.get(f"{V1}/devices/sim2/channels/7/history?{q}")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["channel"] == 7 and body["every_s"] == 2.0 and body["source"] == "raw"
    # Buckets are 2 s wide, aligned to whole multiples of 2 s (not to `start`: issue 11),
    # and count every stored scan in them.
    journal = client.app.state.service.journal  # type: ignore[attr-defined]
    stored = journal.scans_between("sim2", time_to_us(start), time_to_us(end))
    assert len(stored) >= 3
    expected: collections.Counter[datetime] = collections.Counter(
        us_to_time(s.time_us // 2_000_000 * 2_000_000) for s in stored
    )
    got = {datetime.fromisoformat(p["time"]): p["samples"] for p in body["points"]}
    assert got == dict(expected)
    assert all(
        p["power_dbm_min"] <= p["power_dbm_mean"] <= p["power_dbm_max"] for p in body["points"]
    )
    # Rounded to the stored resolution (issue 11: means came out as -20.129299999999997).
    values = [p[k] for p in body["points"] for k in p if k.endswith(("_mean", "_min", "_max"))]
    assert values and all(v is None or round(v, 4) == v for v in values)
    assert any(v is not None and len(repr(v).split(".")[-1]) <= 4 for v in values)
    r = client.get(f"{V1}/devices/sim2/channels/7/history?{q}&format=csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    lines = r.text.strip().splitlines()
    assert lines[0].startswith("time,samples,power_dbm_mean")
    cells = [c for row in csv.reader(lines[1:]) for c in row[2:] if c]
    assert cells and all(len(c.split(".")[-1]) <= 4 for c in cells), cells[:10]
    assert [(datetime.fromisoformat(t), int(n)) for t, n, *_ in csv.reader(lines[1:])] == [
        (datetime.fromisoformat(p["time"]), p["samples"]) for p in body["points"]
    ]


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("", "ch"),  # with channel 0 below
        ("end=2024-01-01T00:00:00Z&start=2024-01-02T00:00:00Z", "end"),
        ("every=0.5s", "every"),
        ("every=banana", "every"),
        ("start=2024-01-01T00:00:00Z&end=2024-01-01T02:59:00Z&every=1s", "every"),
        ("start=2000-01-01T00:00:00Z&end=2024-01-01T00:00:00Z", "start"),
    ],
)
def test_history_errors_are_422_naming_the_parameter(
    client: TestClient, query: str, param: str
) -> None:
    ch = 0 if param == "ch" else 3
    r = client.get(f"{V1}/devices/sim1/channels/{ch}/history?{query}")
    assert r.status_code == 422, r.text
    (err,) = r.json()["detail"]
    assert err["loc"][-1] == param
    assert err["msg"].startswith(f"{param}:")


def test_channel_81_of_an_80_channel_plan_is_404_naming_the_channel(client: TestClient) -> None:
    # 1..800 (the largest plan a config may hold, a flex grid of 12.5 GHz slots) is what
    # the schema allows; 81 and 97 are valid input naming channels this device's plan
    # does not have: no such resource.
    for ch in (81, 97):
        r = client.get(f"{V1}/devices/sim1/channels/{ch}/history")
        assert r.status_code == 404
        assert "1..80" in r.json()["detail"]
    r = client.get(f"{V1}/devices/sim1/channels/801/history")
    assert r.status_code == 422
    assert r.json()["detail"][0]["msg"].startswith("ch:")


# --- control and alarms ----------------------------------------------------------------


def test_acquisition_stop_start_and_reconfigure(client: TestClient) -> None:
    r = client.put(f"{V1}/devices/sim2/acquisition", json={"running": False}, headers=AUTH)
    assert r.status_code == 200 and r.json()["enabled"] is False
    _wait(lambda: client.get(f"{V1}/devices/sim2").json()["state"] == "paused")
    n = client.get(f"{V1}/devices/sim2").json()["counters"]["scans"]
    time.sleep(0.6)
    assert client.get(f"{V1}/devices/sim2").json()["counters"]["scans"] == n
    r = client.put(
        f"{V1}/devices/sim2/acquisition",
        json={"running": True, "interval_s": 0.3, "averaging": 2},
        headers=AUTH,
    )
    assert r.status_code == 200
    assert (r.json()["interval_s"], r.json()["averaging"]) == (0.3, 2)
    _wait(lambda: client.get(f"{V1}/devices/sim2").json()["counters"]["scans"] > n)
    bad = client.put(f"{V1}/devices/sim2/acquisition", json={"interval_s": -1}, headers=AUTH)
    assert bad.status_code == 422 and "interval_s" in str(bad.json()["detail"][0]["loc"])
    bad = client.put(f"{V1}/devices/sim2/acquisition", json={"mode": "laser"}, headers=AUTH)
    assert bad.status_code == 422


def test_thresholds_raise_alarms_then_clear_them(client: TestClient) -> None:
    original = client.get(f"{V1}/thresholds").json()
    r = client.patch(
        f"{V1}/thresholds", json={"power_low_dbm": 30, "power_high_dbm": None}, headers=AUTH
    )
    assert r.status_code == 200 and r.json()["power_low_dbm"] == 30
    assert r.json()["osnr_low_db"] == original["osnr_low_db"]  # untouched fields stay

    def active() -> list[dict[str, Any]]:
        got: list[dict[str, Any]] = client.get(f"{V1}/alarms?active=true&device=sim1").json()[
            "active"
        ]
        return got

    _wait(lambda: any(a["kind"] == "power_low" for a in active()))
    assert all(a["device"] == "sim1" and a["threshold"] == 30 for a in active())
    recent = client.get(f"{V1}/alarms?device=sim1").json()["recent"]
    assert any(e["kind"] == "power_low" and e["active"] for e in recent)
    r = client.put(
        f"{V1}/thresholds",
        json={k: v for k, v in original.items() if k not in ("overrides", "effective")},
        headers=AUTH,
    )
    assert r.status_code == 200 and r.json() == original
    _wait(lambda: not any(a["kind"] == "power_low" for a in active()))
    bad = client.put(f"{V1}/thresholds", json={"channels": {"0": {}}}, headers=AUTH)
    assert bad.status_code == 422
    bad = client.put(f"{V1}/thresholds", json={"hysteresis_db": 99}, headers=AUTH)
    assert bad.status_code == 422 and "hysteresis_db" in str(bad.json()["detail"][0]["loc"])


# --- auth matrix -------------------------------------------------------------------------

WRITES = [
    ("POST", "/devices/sim1/scan", None),
    ("PUT", "/devices/sim1/acquisition", {"averaging": 1}),
    ("PUT", "/thresholds", {"hysteresis_db": 0.5}),
]


@pytest.mark.parametrize(("method", "path", "body"), WRITES)
def test_writes_need_the_right_key(
    client: TestClient, method: str, path: str, body: dict[str, Any] | None
) -> None:
    r = client.request(method, V1 + path, json=body)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    r = client.request(method, V1 + path, json=body, headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401 and r.json()["detail"] == "wrong API key"
    r = client.request(method, V1 + path, json=body, headers={"Authorization": "Basic abc"})
    assert r.status_code == 401
    r = client.request(method, V1 + path, json=body, headers=AUTH)
    assert r.status_code == 200, r.text
    r = client.request(
        method, V1 + path, json=body, headers={"Authorization": f"Bearer {OTHER_KEY}"}
    )
    assert r.status_code == 200


def test_reads_are_open_by_default(client: TestClient) -> None:
    assert client.get(f"{V1}/devices").status_code == 200


def test_key_matching_compares_against_every_hash() -> None:
    hashes = [hash_api_key("a"), hash_api_key("b")]
    assert key_matches("b", hashes) and key_matches("a", hashes)
    assert not key_matches("c", hashes) and not key_matches("a", [])


def test_no_key_configured_refuses_writes_with_403_and_says_how(tmp_path: Path) -> None:
    service = Service(_settings(tmp_path, api_key_sha256=[]))
    with TestClient(create_app(service)) as c:
        for method, path, body in WRITES:
            r = c.request(method, V1 + path.replace("sim1", "x"), json=body, headers=AUTH)
            if path == "/thresholds":
                assert r.status_code == 403
                detail = r.json()["detail"]
                assert "odpm config hash-key" in detail and "api.api_key_sha256" in detail
        assert c.get(f"{V1}/thresholds").status_code == 200


def test_read_requires_key_when_configured(tmp_path: Path) -> None:
    service = Service(_settings(tmp_path, read_requires_key=True))
    with TestClient(create_app(service)) as c:
        for path in ("/devices", "/alarms", "/thresholds"):
            assert c.get(V1 + path).status_code == 401
            assert c.get(V1 + path, headers={"Authorization": "Bearer wrong"}).status_code == 401
            assert c.get(V1 + path, headers=AUTH).status_code == 200
        assert c.get(f"{V1}/health").status_code in (200, 503)  # probes stay open


# --- metrics and replicas ------------------------------------------------------------------


def test_metrics_parse_and_count_scans_and_requests(client: TestClient) -> None:
    client.get(f"{V1}/devices/sim1/latest")
    r = client.get("/metrics")
    assert r.status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    scans = {
        s.labels["device"]: s.value
        for s in families["odpm_scans"].samples
        if s.name.endswith("_total")
    }
    assert scans["sim1"] >= 1 and scans["sim2"] >= 1
    assert "odpm_reconnects" in families and "odpm_crc_failures" in families
    assert "odpm_lost_frames" in families and "odpm_journal_backlog_rows" in families
    latency = families["odpm_http_request_duration_seconds"]
    routes = {s.labels.get("route") for s in latency.samples}
    assert "/api/v1/devices/{device_id}/latest" in routes


def test_replica_serves_the_stored_latest_and_refuses_device_writes(
    client: TestClient, data_dir: Path, tmp_path: Path
) -> None:
    stored = client.get(f"{V1}/devices/sim1/latest").json()
    settings = _settings(data_dir).model_copy(
        update={"devices": [d.config for d in client.app.state.service.devices.values()]}  # type: ignore[attr-defined]
    )
    replica = Service.from_settings(settings, acquisition=False)
    with TestClient(create_app(replica)) as c:
        r = c.get(f"{V1}/devices/sim1/latest")
        assert r.status_code == 200
        assert r.json()["time"] >= stored["time"]
        assert c.get(f"{V1}/devices/sim1").json()["state"] == "replica"
        r = c.post(f"{V1}/devices/sim1/scan", headers=AUTH)
        assert r.status_code == 409 and "acquisition" in r.json()["detail"]
        assert c.put(f"{V1}/devices/sim1/acquisition", json={}, headers=AUTH).status_code == 409
        # Thresholds act in the agents' pipelines: a replica must not pretend to apply them.
        r = c.put(f"{V1}/thresholds", json={"osnr_low_db": 12.0}, headers=AUTH)
        assert r.status_code == 409 and "agents" in r.json()["detail"]
        assert c.get(f"{V1}/thresholds").json()["osnr_low_db"] != 12.0


def test_replica_with_influxdb_down_answers_503_not_500(tmp_path: Path) -> None:
    from tests.support.influxd import free_port

    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    settings = Settings(
        api=ApiConfig(api_key_sha256=[hash_api_key(KEY)]),
        storage=StorageConfig(
            data_dir=tmp_path / "replica", influx=InfluxConfig(url=dead, timeout_s=0.5)
        ),
    )
    replica = Service.from_settings(settings, acquisition=False)
    with TestClient(create_app(replica)) as c:
        r = c.get(f"{V1}/alarms")
        assert r.status_code == 503
        assert "storage unavailable" in r.json()["detail"]
