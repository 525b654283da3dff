"""A flex-grid device through the service and the API: a simulated ODPM-96 on a real
TCP socket, port mode, with a ``[[devices.plan.channels]]`` plan of 50/75/150 GHz slots
(the simulator's own ports stay the fixed 50 GHz AWG: the pipeline sums them)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from odpm.config import Settings, StorageConfig
from odpm.grid import ChannelPlan
from odpm.service import Service

V1 = "/api/v1"
SLOTS = [(-100, 4), (-90, 6), (-72, 12), (-56, 4), (-48, 4)]  # 50, 75, 150, 50, 50 GHz
PLAN = ChannelPlan.flex(SLOTS)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    data_dir: Path = tmp_path_factory.mktemp("flexapi")
    service = Service.from_settings(
        Settings(storage=StorageConfig(data_dir=data_dir)),
        simulate=1,
        simulate_options={
            "interval_s": 0.2,
            "plan": {"channels": [{"n": n, "m": m} for n, m in SLOTS]},
        },
    )
    with TestClient(create_app(service)) as c:
        deadline = time.monotonic() + 30
        while c.get(f"{V1}/devices/sim1/latest").status_code != 200:
            assert time.monotonic() < deadline, "no reading in time"
            time.sleep(0.05)
        yield c


def test_latest_has_each_channel_width(client: TestClient) -> None:
    body = client.get(f"{V1}/devices/sim1/latest").json()
    channels = body["channels"]
    assert [c["channel"] for c in channels] == [1, 2, 3, 4, 5]
    assert [c["width_ghz"] for c in channels] == [50.0, 75.0, 150.0, 50.0, 50.0]
    assert [c["frequency_thz"] for c in channels] == PLAN.frequencies_thz.tolist()


def test_flex_channel_power_is_the_sum_of_its_ports(client: TestClient) -> None:
    """A 150 GHz slot covers three 50 GHz ports: with lit ports of similar power it reads
    ~10 log10(3) ~ 4.8 dB above a 50 GHz slot's single port."""
    body = client.get(f"{V1}/devices/sim1/latest").json()
    p = {c["channel"]: c["power_dbm"] for c in body["channels"]}
    assert all(v is not None for v in p.values())
    narrow = np.mean([p[1], p[4], p[5]])
    assert 2.5 < p[3] - narrow < 7.5
    assert 1.0 < p[2] - narrow < 5.0  # two ports


def test_openconfig_on_a_flex_device(client: TestClient) -> None:
    r = client.get(f"{V1}/devices/sim1/openconfig")
    assert r.status_code == 200
    (monitor,) = r.json()["openconfig-channel-monitor:channel-monitors"]["channel-monitor"]
    channels = monitor["channels"]["channel"]
    lower, upper = PLAN.edges_mhz
    assert [int(c["lower-frequency"]) for c in channels] == lower.tolist()
    assert [int(c["upper-frequency"]) for c in channels] == upper.tolist()
    assert int(channels[2]["upper-frequency"]) - int(channels[2]["lower-frequency"]) == 150_000


def test_history_of_a_flex_channel(client: TestClient) -> None:
    deadline = time.monotonic() + 30
    while client.get(f"{V1}/devices/sim1").json()["readings_stored"] < 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    r = client.get(f"{V1}/devices/sim1/channels/3/history")
    assert r.status_code == 200, r.text
    assert r.json()["points"]
    r = client.get(f"{V1}/devices/sim1/channels/6/history")
    assert r.status_code == 404 and "6" in r.text
