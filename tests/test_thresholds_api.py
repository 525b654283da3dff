"""GET / PUT / PATCH /api/v1/thresholds: inheritance, switching off, merge patch,
validation naming the field, and the OpenAPI description of the channel map."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from odpm.config import ApiConfig, Settings, StorageConfig, hash_api_key
from odpm.service import Service

KEY = "thresholds-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
URL = "/api/v1/thresholds"
MERGE = {**AUTH, "Content-Type": "application/merge-patch+json"}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(
        storage=StorageConfig(data_dir=tmp_path),
        api=ApiConfig(api_key_sha256=[hash_api_key(KEY)]),
    )
    service = Service.from_settings(settings, simulate=1, simulate_options={"interval_s": 5})
    with TestClient(create_app(service)) as c:
        yield c


def _put(c: TestClient, body: dict[str, Any]) -> Any:
    r = c.put(URL, json=body, headers=AUTH)
    assert r.status_code == 200, r.text
    return r.json()


def test_put_channel_override_inherits_the_fields_it_leaves_out(client: TestClient) -> None:
    """Issue 11: PUT {"channels": {"14": {"osnr_low_db": 12}}} switched channel 14's other
    alarms off (omitted fields became null)."""
    got = _put(client, {"osnr_low_db": 18, "channels": {"14": {"osnr_low_db": 12}}})
    assert got["overrides"] == {"14": {"osnr_low_db": 12.0}}
    assert got["effective"]["14"] == {
        "power_low_dbm": -30.0,
        "power_high_dbm": 5.0,
        "osnr_low_db": 12.0,
        "offset_high_ghz": 5.0,
    }
    assert client.get(URL).json() == got


def test_null_switches_off_and_shows_differently_from_inherited(client: TestClient) -> None:
    got = _put(client, {"channels": {"3": {"power_low_dbm": None}}})
    assert got["overrides"] == {"3": {"power_low_dbm": None}}  # switched off: present, null
    assert got["effective"]["3"]["power_low_dbm"] is None
    assert got["effective"]["3"]["power_high_dbm"] == 5.0  # inherited: absent above
    assert "power_high_dbm" not in got["overrides"]["3"]


def test_patch_merges_channel_entries_and_keeps_other_channels(client: TestClient) -> None:
    """Issue 11: a second PUT dropped every other channel's overrides; PATCH merges."""
    _put(client, {"channels": {"14": {"osnr_low_db": 12}, "20": {"power_high_dbm": 0}}})
    r = client.patch(URL, json={"channels": {"14": {"power_low_dbm": -28}}}, headers=MERGE)
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["overrides"] == {
        "14": {"osnr_low_db": 12.0, "power_low_dbm": -28.0},
        "20": {"power_high_dbm": 0.0},
    }
    assert got["osnr_low_db"] == 15.0  # globals untouched
    # Plain JSON works too; null on a channel entry removes its overrides, on a global
    # threshold switches it off.
    r = client.patch(
        URL, json={"channels": {"20": None}, "total_power_low_dbm": None}, headers=AUTH
    )
    assert r.status_code == 200, r.text
    got = r.json()
    assert set(got["overrides"]) == {"14"} and got["total_power_low_dbm"] is None
    # PUT is a full replacement: what it leaves out goes back to the defaults.
    got = _put(client, {"osnr_low_db": 20})
    assert got["overrides"] == {} and got["total_power_low_dbm"] == -25.0


def test_patch_refuses_other_media_types_and_non_objects(client: TestClient) -> None:
    r = client.patch(URL, content=b"osnr_low_db=3", headers={**AUTH, "Content-Type": "text/plain"})
    assert r.status_code == 415 and "merge-patch+json" in r.json()["detail"]
    r = client.patch(URL, content=b"[1]", headers=MERGE)
    assert r.status_code == 422
    r = client.patch(URL, content=b"{nope", headers=MERGE)
    assert r.status_code == 400


@pytest.mark.parametrize(
    ("method", "body", "named"),
    [
        ("put", {"power_low_dbm": -10, "power_high_dbm": -20}, "power_low_dbm"),
        ("patch", {"total_power_low_dbm": 25}, "total_power_low_dbm"),
        ("patch", {"channels": {"9": {"power_high_dbm": -40}}}, "channels.9.power_low_dbm"),
        ("put", {"channels": {"81": {"osnr_low_db": 10}}}, "81"),
        ("patch", {"channels": {"81": {"osnr_low_db": 10}}}, "81"),
        ("put", {"hysteresis_db": -0.5}, "hysteresis_db"),
        ("patch", {"offset_hysteresis_ghz": -1}, "offset_hysteresis_ghz"),
        ("put", {"total_power_high_dbm": False}, "total_power_high_dbm"),
        ("patch", {"channels": {"2": {"osnr_low_db": True}}}, "osnr_low_db"),
    ],
)
def test_bad_thresholds_are_refused_naming_the_field(
    client: TestClient, method: str, body: dict[str, Any], named: str
) -> None:
    before = client.get(URL).json()
    r = client.request(method.upper(), URL, json=body, headers=AUTH)
    assert r.status_code == 422, r.text
    assert named in str(r.json()["detail"]), r.json()
    assert client.get(URL).json() == before  # nothing changed


def test_openapi_declares_channel_keys_as_bounded_integers(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    for model, field in (("ThresholdsIn", "channels"), ("ThresholdsOut", "overrides")):
        names = schemas[model]["properties"][field]["propertyNames"]
        pattern = re.compile(names["pattern"])  # exactly 1..800, the largest plan
        matched = [k for k in map(str, range(1200)) if pattern.fullmatch(k)]
        assert matched == [str(c) for c in range(1, 801)], model
        assert not any(pattern.fullmatch(k) for k in ("01", "+1", "1.0", "-1", "")), model
    patch = spec["paths"][URL]["patch"]["requestBody"]["content"]
    assert set(patch) == {"application/merge-patch+json", "application/json"}
