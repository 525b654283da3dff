"""What an InfluxDB-only replica reads back: the devices in storage, each one's latest
reading and the alarm events and states, rebuilt from line protocol written to a real
influxd."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from odpm.config import InfluxConfig, Settings, StorageConfig
from odpm.grid import ChannelPlan
from odpm.models import AlarmEvent, AlarmKind, Quality
from odpm.service import Service
from odpm.storage.history import InfluxHistory
from odpm.storage.journal import us_to_time
from odpm.storage.lineprotocol import alarm_line
from tests.support.influxd import InfluxServer

pytestmark = pytest.mark.influx

T1_US = 1_700_000_000_000_000
T2_US = T1_US + 1_000_000
T3_US = T2_US + 1_000_000

#: Known alarm events, oldest first, as the forwarder writes them: on device a, OSNR low
#: on channel 1 raised then cleared, LOS raised on channel 2 (and still active), total
#: power high raised device-wide (still active); on device b, power low raised on
#: channel 1 (still active).
EVENTS = [
    AlarmEvent("a", us_to_time(T1_US), AlarmKind.OSNR_LOW, 1, True, 18.5, 20.0),
    AlarmEvent("b", us_to_time(T1_US), AlarmKind.POWER_LOW, 1, True, -30.25, -25.0),
    AlarmEvent("a", us_to_time(T2_US), AlarmKind.LOSS_OF_SIGNAL, 2, True, -45.0, None),
    AlarmEvent("a", us_to_time(T2_US), AlarmKind.TOTAL_POWER_HIGH, None, True, 2.5, 2.0),
    AlarmEvent("a", us_to_time(T3_US), AlarmKind.OSNR_LOW, 1, False, 21.5, 20.0),
]


def _alarm_lines(events: list[AlarmEvent]) -> str:
    return "".join(
        alarm_line(
            e.device_id,
            round(e.time.timestamp() * 1e6),
            kind=e.kind.value,
            channel=e.channel,
            active=e.active,
            value=e.value,
            threshold=e.threshold,
        )
        for e in events
    )


def _key(e: AlarmEvent) -> tuple[str, str, int, float]:
    """A total order on events (the store's order within one timestamp is unspecified)."""
    return (e.device_id, e.kind.value, e.channel or 0, e.time.timestamp())


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
    influxd.write(LINES + "\n" + _alarm_lines(EVENTS), influx_db)
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


def test_alarm_events_newest_first(store: InfluxHistory) -> None:
    got = store.alarm_events()
    # Events at one timestamp may come in any order; newest first between timestamps.
    assert sorted(got, key=_key) == sorted(EVENTS, key=_key)
    assert [e.time for e in got] == sorted((e.time for e in EVENTS), reverse=True)
    assert got[0] == EVENTS[-1]  # the clear, with its value and threshold


def test_alarm_events_limit_device_and_since(store: InfluxHistory) -> None:
    newest_two = store.alarm_events(limit=2)
    assert len(newest_two) == 2 and newest_two[0] == EVENTS[-1]
    assert newest_two[1].time == us_to_time(T2_US)
    assert store.alarm_events(device="b") == [EVENTS[1]]
    since = store.alarm_events(since=us_to_time(T2_US))
    assert sorted(since, key=_key) == sorted(EVENTS[2:], key=_key)
    assert store.alarm_events(since=us_to_time(T3_US) + timedelta(microseconds=1)) == []
    assert store.alarm_events(device="a' OR device='b") == []
    with pytest.raises(ValueError, match="limit"):
        store.alarm_events(limit=0)


def test_active_alarms_are_the_last_event_per_series(store: InfluxHistory) -> None:
    active = sorted(store.active_alarms(), key=_key)
    # The cleared OSNR alarm is gone; the device-wide one has channel None.
    assert active == sorted(EVENTS[1:4], key=_key)
    assert sorted(store.active_alarms("a"), key=_key) == sorted(EVENTS[2:4], key=_key)
    assert store.active_alarms("nobody") == []


def test_a_replica_service_rebuilds_alarms_from_influxdb(
    influxd: InfluxServer, influx_db: str, tmp_path: Path
) -> None:
    influxd.write(LINES + "\n" + _alarm_lines(EVENTS), influx_db)
    influx = InfluxConfig(url=influxd.url, database=influx_db)
    settings = Settings(storage=StorageConfig(data_dir=tmp_path, influx=influx))
    history = InfluxHistory(influx)
    service = Service(settings, history=history, acquisition=False)
    try:
        service.refresh_latest_from_storage()
        assert sorted(service.devices) == ["a", "b"]
        assert sorted(service.active_alarms(), key=_key) == sorted(EVENTS[1:4], key=_key)
        assert [e.kind for e in service.active_alarms("b")] == [AlarmKind.POWER_LOW]
        assert service.recent_alarm_events(None, 1) == [EVENTS[-1]]
        assert service.recent_alarm_events("b", 10) == [EVENTS[1]]

        # The next refresh follows InfluxDB: the LOS clears, and a new alarm on b.
        later = [
            AlarmEvent("a", us_to_time(T3_US + 1), AlarmKind.LOSS_OF_SIGNAL, 2, False, -3.0, None),
            AlarmEvent("b", us_to_time(T3_US + 1), AlarmKind.OFFSET_HIGH, 1, True, 9.0, 5.0),
        ]
        influxd.write(_alarm_lines(later), influx_db)
        service.refresh_latest_from_storage()
        assert sorted(service.active_alarms(), key=_key) == sorted(
            [EVENTS[1], EVENTS[3], later[1]], key=_key
        )
    finally:
        history.close()


def test_latest_keeps_each_osnr_method_and_uncertainty(
    influxd: InfluxServer, influx_db: str
) -> None:
    """A replica shows which method produced each OSNR and how sure it is, as the agent
    does (issue 15): the fields the forwarder writes are read back, not dropped."""
    influxd.write(
        "\n".join(
            [
                f"scan,device=c,mode=trace total_power_dbm=1.0,lit_channels=3i {T1_US}",
                f"channel,device=c,channel=01 power_dbm=-1.0,osnr_db=18.5,"
                f'osnr_uncertainty_db=0.25,osnr_method="fit",present=true {T1_US}',
                f"channel,device=c,channel=02 power_dbm=-2.0,osnr_db=25.0,"
                f'osnr_uncertainty_db=0.02,osnr_method="interpolation",present=true {T1_US}',
                f'channel,device=c,channel=03 power_dbm=-3.0,osnr_method="shoulder",'
                f"osnr_db=21.0,osnr_uncertainty_db=0.1,present=true {T1_US}",
                f"channel,device=c,channel=04 power_dbm=-50.0,present=false {T1_US}",
            ]
        ),
        influx_db,
    )
    store = InfluxHistory(InfluxConfig(url=influxd.url, database=influx_db))
    try:
        r = store.latest("c")
    finally:
        store.close()
    assert r is not None
    rows = r.to_dict()["channels"]
    assert [c["osnr_method"] for c in rows] == ["fit", "interpolation", "shoulder", None]
    assert [c["osnr_uncertainty_db"] for c in rows][:3] == [0.25, 0.02, 0.1]
    assert rows[3]["osnr_uncertainty_db"] is None
