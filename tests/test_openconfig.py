"""GET /api/v1/devices/{id}/openconfig: the openconfig-channel-monitor view of the latest
reading, from a service running a simulated monitor."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from odpm.config import Settings, StorageConfig
from odpm.service import Service

V1 = "/api/v1"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    data_dir: Path = tmp_path_factory.mktemp("openconfig")
    service = Service.from_settings(
        Settings(storage=StorageConfig(data_dir=data_dir)),
        simulate=1,
        simulate_options={"interval_s": 0.2},
    )
    with TestClient(create_app(service)) as c:
        deadline = time.monotonic() + 30
        while c.get(f"{V1}/devices/sim1/latest").status_code != 200:
            assert time.monotonic() < deadline, "no reading in time"
            time.sleep(0.05)
        yield c


def test_channel_monitor_state_matches_latest_reading(client: TestClient) -> None:
    r = client.get(f"{V1}/devices/sim1/openconfig")
    assert r.status_code == 200
    latest = client.get(f"{V1}/devices/sim1/latest").json()
    (monitor,) = r.json()["openconfig-channel-monitor:channel-monitors"]["channel-monitor"]
    assert monitor["name"] == "sim1" and monitor["state"]["name"] == "sim1"
    channels = monitor["channels"]["channel"]
    assert len(channels) == 80
    first = channels[0]
    # Channel 1 of the 80 x 50 GHz plan sits at 192.10 THz: its slot is 192.075-192.125 THz.
    assert first["lower-frequency"] == first["state"]["lower-frequency"] == "192075000"
    assert first["upper-frequency"] == first["state"]["upper-frequency"] == "192125000"
    uppers = [int(c["upper-frequency"]) for c in channels]
    lowers = [int(c["lower-frequency"]) for c in channels]
    assert all(lo < hi for lo, hi in zip(lowers, uppers, strict=True))
    assert lowers[1:] == uppers[:-1]  # contiguous 50 GHz slots
    # Power: two decimals, the slot power of a (possibly later) reading of the same line.
    by_lower = {c["lower-frequency"]: c["state"].get("power") for c in channels}
    for ch, oc in zip(latest["channels"], channels, strict=True):
        power = by_lower[oc["lower-frequency"]]
        if ch["power_dbm"] is None:
            continue
        assert power is not None and len(power.split(".")[1]) == 2
        assert abs(float(power) - ch["power_dbm"]) < 1.0


def test_unknown_device_is_404(client: TestClient) -> None:
    r = client.get(f"{V1}/devices/nope/openconfig")
    assert r.status_code == 404 and "nope" in r.json()["detail"]
