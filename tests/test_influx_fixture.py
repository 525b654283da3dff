"""The influxd fixture itself: a real server on loopback that stores and returns points."""

from __future__ import annotations

from tests.support.influxd import InfluxServer, make_config


def test_fixture_server_writes_and_reads_back(influxd: InfluxServer, influx_db: str) -> None:
    status = influxd.write(
        "fixture_check,device=sim1 power_dbm=-12.5,present=true 1700000000000000\n"
        "fixture_check,device=sim1 power_dbm=-13.25,present=false 1700000001000000\n",
        db=influx_db,
    )
    assert status == 204
    result = influxd.query("SELECT power_dbm, present FROM fixture_check", db=influx_db)
    series = result["results"][0]["series"][0]
    assert series["columns"] == ["time", "power_dbm", "present"]
    assert series["values"] == [
        [1700000000000000, -12.5, True],
        [1700000001000000, -13.25, False],
    ]


def test_fixture_config_binds_loopback_only(influxd: InfluxServer) -> None:
    text = influxd.config_path.read_text()
    assert f'bind-address = "127.0.0.1:{influxd.http_port}"' in text
    assert f'bind-address = "127.0.0.1:{influxd.rpc_port}"' in text
    assert "reporting-disabled = true" in text
    assert str(influxd.root) in text
    assert ":8086" not in text


def test_make_config_rewrites_every_directory(tmp_path) -> None:  # type: ignore[no-untyped-def]
    default = (
        'reporting-enabled = false\nbind-address = "127.0.0.1:8088"\n[meta]\n'
        '  dir = "/var/lib/influxdb/meta"\n[data]\n  dir = "/var/lib/influxdb/data"\n'
        '  wal-dir = "/var/lib/influxdb/wal"\n[http]\n  bind-address = ":8086"\n'
    )
    cfg = make_config(default, tmp_path, 18086, 18088)
    assert "/var/lib/influxdb" not in cfg
    assert 'bind-address = "127.0.0.1:18086"' in cfg
    assert 'bind-address = "127.0.0.1:18088"' in cfg
