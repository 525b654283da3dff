"""What an InfluxDB-only replica reads back: the devices in storage and each one's latest
reading, rebuilt from line protocol written to a real influxd."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest

from odpm.config import InfluxConfig
from odpm.grid import ChannelPlan
from odpm.models import Quality
from odpm.storage.history import InfluxHistory
from tests.support.influxd import InfluxServer

pytestmark = pytest.mark.influx

T1_US = 1_700_000_000_000_000
T2_US = T1_US + 1_000_000

LINES = "\n".join(
    [
        # device a, an older trace scan: channel 1 lit with an OSNR.
        f"scan,device=a,mode=trace total_power_dbm=1.5,lit_channels=2i,min_osnr_db=25.0 {T1_US}",
        f"channel,device=a,channel=01 power_dbm=-1.0,osnr_db=30.0,present=true {T1_US}",
        f"channel,device=a,channel=02 power_dbm=-2.0,osnr_db=25.0,present=true {T1_US}",
        # device a, the newest trace scan: channel 1 lit but its noise unresolved (no
        # OSNR), channel 2 dark, channel 3 fine.
        f"scan,device=a,mode=trace total_power_dbm=2.5,lit_channels=2i,tilt_db=0.5,"
        f"flatness_db=1.25,min_osnr_db=20.0,temperature_c=31.5 {T2_US}",
        f"channel,device=a,channel=01 power_dbm=-3.0,signal_power_dbm=-3.1,"
        f"offset_ghz=1.5,present=true {T2_US}",
        f"channel,device=a,channel=02 power_dbm=-45.0,present=false {T2_US}",
        f"channel,device=a,channel=03 power_dbm=-4.0,signal_power_dbm=-4.1,osnr_db=20.0,"
        f"offset_ghz=-0.5,present=true {T2_US}",
        # device b: one port reading.
        f"scan,device=b,mode=power total_power_dbm=0.5,lit_channels=1i {T1_US}",
        f"channel,device=b,channel=01 power_dbm=-7.0,present=true {T1_US}",
        f"channel,device=b,channel=02 power_dbm=-50.0,present=false {T1_US}",
    ]
)


@pytest.fixture
def store(influxd: InfluxServer, influx_db: str) -> Iterator[InfluxHistory]:
    influxd.write(LINES + "\n", influx_db)
    history = InfluxHistory(InfluxConfig(url=influxd.url, database=influx_db))
    yield history
    history.close()


def test_devices_are_the_ones_with_scans(store: InfluxHistory) -> None:
    assert store.devices() == ["a", "b"]


def test_devices_of_an_empty_database(influxd: InfluxServer, influx_db: str) -> None:
    store = InfluxHistory(InfluxConfig(url=influxd.url, database=influx_db))
    try:
        assert store.devices() == []
        assert store.latest("a") is None
    finally:
        store.close()


def test_latest_is_the_newest_scan_only(store: InfluxHistory) -> None:
    r = store.latest("a")
    assert r is not None
    assert r.device_id == "a" and r.mode == "trace"
    assert int(r.time.timestamp() * 1e6) == T2_US
    assert r.channel.tolist() == [1, 2, 3]
    assert r.present.tolist() == [True, False, True]
    # Values missing from the newest scan stay missing: no OSNR of the older scan.
    assert math.isnan(r.osnr_db[0]) and math.isnan(r.osnr_db[1]) and r.osnr_db[2] == 20.0
    assert r.power_dbm.tolist() == [-3.0, -45.0, -4.0]
    assert r.signal_power_dbm[0] == -3.1 and r.offset_ghz[2] == -0.5
    assert [Quality(int(q)) for q in r.quality] == [
        Quality.NOISE_UNRESOLVED,
        Quality.DARK,
        Quality.OK,
    ]
    assert (r.total_power_dbm, r.lit_channels, r.tilt_db, r.flatness_db) == (2.5, 2, 0.5, 1.25)
    assert (r.min_osnr_db, r.temperature_c) == (20.0, 31.5)
    plan = ChannelPlan()
    assert r.frequency_thz.tolist() == [plan.frequency_of(c) for c in (1, 2, 3)]
    assert r.to_dict()["channels"][1]["quality"] == "dark"


def test_latest_port_reading_is_power_only(store: InfluxHistory) -> None:
    r = store.latest("b", ChannelPlan.c_band_100ghz())
    assert r is not None and r.mode == "power"
    assert [Quality(int(q)) for q in r.quality] == [Quality.POWER_ONLY, Quality.DARK]
    assert math.isnan(r.min_osnr_db) and r.temperature_c is None
    assert r.frequency_thz[1] == ChannelPlan.c_band_100ghz().frequency_of(2)


def test_device_names_are_quoted_in_queries(store: InfluxHistory) -> None:
    assert store.latest("a' OR device='b") is None
