"""The route table the request guard and the OpenAPI document share, on an app without
devices (no acquisition needed): access levels, declared security, schema bounds, 405s."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient

from api.app import create_app
from api.deps import Access
from api.guard import route_rules
from odpm.config import ApiConfig, Settings, StorageConfig, hash_api_key
from odpm.grid import MAX_PLAN_CHANNELS
from odpm.service import Service

KEY = "guard-key"


def _client(tmp_path: Path, **api: Any) -> TestClient:
    settings = Settings(
        storage=StorageConfig(data_dir=tmp_path),
        api=ApiConfig(api_key_sha256=[hash_api_key(KEY)], **api),
    )
    return TestClient(create_app(Service(settings)))


#: Routes anyone may call (an orchestrator's readiness and liveness probes).
PROBES = {"/api/v1/health", "/api/v1/health/live"}


@pytest.fixture
def open_client(tmp_path: Path) -> Iterator[TestClient]:
    with _client(tmp_path / "open") as c:
        yield c


@pytest.fixture
def locked_client(tmp_path: Path) -> Iterator[TestClient]:
    with _client(tmp_path / "locked", read_requires_key=True) as c:
        yield c


def test_every_route_has_its_access_level(tmp_path: Path) -> None:
    app = create_app(Service(Settings(storage=StorageConfig(data_dir=tmp_path))))
    levels = {(r.template, m): r.access for r in route_rules(app.routes) for m in r.methods}
    assert levels[("/api/v1/health", "GET")] is Access.PROBE
    assert levels[("/api/v1/health/live", "GET")] is Access.PROBE
    assert levels[("/metrics", "GET")] is Access.METRICS
    assert levels[("/api/v1/thresholds", "PUT")] is Access.WRITE
    assert levels[("/api/v1/devices/{device_id}/scan", "POST")] is Access.WRITE
    for (template, method), access in levels.items():
        if method == "GET" and template.startswith("/api/v1/") and template not in PROBES:
            assert access is Access.READ, template


def test_an_api_route_without_a_key_check_is_still_a_locked_read(tmp_path: Path) -> None:
    client = _client(tmp_path, read_requires_key=True)
    extra = APIRouter()

    @extra.get("/api/v1/forgotten")
    async def forgotten() -> dict[str, str]:
        return {"secret": "device data"}

    client.app.include_router(extra)  # type: ignore[attr-defined]
    with client:
        assert client.get("/api/v1/forgotten").status_code == 401
        r = client.get("/api/v1/forgotten", headers={"Authorization": f"Bearer {KEY}"})
        assert r.status_code == 200


def _operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            yield path, method, op


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from _walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v)


#: POSTs that change nothing and need no key when reads are open: re-analysing a stored
#: trace with other settings returns a Reading and stores nothing.
READS_BY_POST = {("post", "/api/v1/devices/{device_id}/traces/{trace_id}/analyze")}


def test_schema_declares_security_only_where_a_key_is_needed(
    open_client: TestClient, locked_client: TestClient
) -> None:
    opened = open_client.get("/openapi.json").json()
    for path, method, op in _operations(opened):
        if method == "get" or (method, path) in READS_BY_POST:
            assert "security" not in op, path
        else:
            assert op["security"] == [{"HTTPBearer": []}], (method, path)
    locked = locked_client.get("/openapi.json").json()
    for path, method, op in _operations(locked):
        if path in PROBES:
            assert op["security"] == [{}, {"HTTPBearer": []}]
        else:
            assert op["security"] == [{"HTTPBearer": []}], (method, path)


def test_schema_has_no_typed_refs_and_bounds_its_parameters(open_client: TestClient) -> None:
    doc = open_client.get("/openapi.json").json()
    assert not [n for n in _walk(doc) if "$ref" in n and len(n) > 1]
    history = doc["paths"]["/api/v1/devices/{device_id}/channels/{ch}/history"]["get"]
    params = {p["name"]: p["schema"] for p in history["parameters"]}
    assert (params["ch"]["minimum"], params["ch"]["maximum"]) == (1, MAX_PLAN_CHANNELS)
    every = next(s for s in params["every"]["anyOf"] if s.get("type") == "string")
    assert "pattern" in every and every["maxLength"] <= 32
    channels = doc["components"]["schemas"]["ThresholdsIn"]["properties"]["channels"]
    assert channels["propertyNames"]["pattern"].startswith("^")


def test_405_lists_every_method_of_the_path(open_client: TestClient) -> None:
    r = open_client.options("/api/v1/thresholds")
    assert r.status_code == 405
    assert r.headers["allow"] == "GET, PATCH, PUT"
    r = open_client.request("DELETE", "/api/v1/devices")
    assert r.status_code == 405 and r.headers["allow"] == "GET"


def test_refusals_before_routing_are_labelled_with_the_route_template(
    open_client: TestClient,
) -> None:
    r = open_client.put("/api/v1/devices/nope/acquisition", json={"running": False})
    assert r.status_code == 401 and r.headers["connection"] == "close"
    r = open_client.put(
        "/api/v1/devices/nope/acquisition",
        content=b"{" + b" " * 2_000_000 + b"}",
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
    )
    assert r.status_code == 413
    text = open_client.get("/metrics").text
    route = 'route="/api/v1/devices/{device_id}/acquisition"'
    for status in ("401", "413"):
        assert any(
            line.startswith("odpm_http_request_duration_seconds_count")
            and route in line
            and f'status="{status}"' in line
            and 'method="PUT"' in line
            for line in text.splitlines()
        ), status


def test_metrics_keys_must_be_digests() -> None:
    with pytest.raises(ValueError, match="SHA-256 hex digest"):
        ApiConfig(metrics_key_sha256=["the-key-itself"])
