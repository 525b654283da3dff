"""The provisioned Grafana dashboards, checked as Grafana would load them and run against data.

Two halves:

* JSON checks: unique uids and panel ids, every panel, target and variable on the provisioned
  data source uid, units on every numeric panel, the committed JSON equal to what
  ``config/grafana/build_dashboards.py`` writes.
* Query checks: every InfluxQL target (and every variable query) expanded the way Grafana
  expands it (:mod:`tests.support.grafana_macros`) and run against a real ``influxd`` holding
  an hour of readings for two monitors; each must return the series it is drawn from -- the
  expected columns, tags and a non-null value -- for a multi-value channel selection, for
  "All", through the browser-side (relative time) path and over a 7-day range.

Filling InfluxDB: ``odpm serve --simulate`` cannot run yet (its acquisition module is not
written), so :func:`_fill` writes line protocol encoded by the forwarder's own encoder
(:mod:`odpm.storage.lineprotocol`, schema of ``docs/schema.md``) from a small numpy model of
two monitors (tilted power, OSNR spread, three dark channels, a raised and a cleared alarm,
1-minute rollups computed from the same samples).  Switching to a
simulated run of the service only means replacing :func:`_fill`; the expectations below hold
for any data with lit and dark channels and one active alarm.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from odpm.storage import lineprotocol as lp
from tests.support import grafana_macros as gm
from tests.support.influxd import InfluxServer

ROOT = Path(__file__).resolve().parents[1]
GRAFANA = ROOT / "config" / "grafana"
DASHBOARD_DIR = GRAFANA / "dashboards"
DATASOURCES_YAML = GRAFANA / "provisioning" / "datasources" / "odpm.yaml"

NUMERIC_PANELS = {"stat", "gauge", "bargauge", "timeseries", "barchart", "heatmap", "trend"}

pytestmark = pytest.mark.influx


# --------------------------------------------------------------------------------------------
# Loading


def load_dashboards() -> dict[str, dict[str, Any]]:
    boards = {}
    for path in sorted(DASHBOARD_DIR.glob("*.json")):
        board = json.loads(path.read_text())
        boards[path.name] = board
    return boards


def provisioned_datasource() -> dict[str, Any]:
    doc = yaml.safe_load(DATASOURCES_YAML.read_text())
    (ds,) = doc["datasources"]
    return dict(ds)


def all_panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for p in board.get("panels", []):
        yield p
        yield from p.get("panels", [])  # collapsed rows hold their panels


def influxql_targets(board: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for p in all_panels(board):
        for t in p.get("targets", []):
            yield p, t


# --------------------------------------------------------------------------------------------
# JSON checks


def test_dashboards_exist_with_unique_uids_and_titles() -> None:
    boards = load_dashboards()
    titles = {b["title"] for b in boards.values()}
    assert {"ODPM overview", "ODPM channel detail"} <= titles
    uids = [b["uid"] for b in boards.values()]
    assert len(uids) == len(set(uids)), uids
    assert all(re.fullmatch(r"[a-zA-Z0-9_-]{1,40}", u) for u in uids), uids


def test_committed_json_is_what_the_generator_writes() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "build_dashboards", GRAFANA / "build_dashboards.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rendered: dict[str, str] = module.render()
    assert set(rendered) == {p.name for p in DASHBOARD_DIR.glob("*.json")}
    for name, text in rendered.items():
        assert (DASHBOARD_DIR / name).read_text() == text, (
            f"{name} differs from build_dashboards.py output: run it and commit the JSON"
        )


@pytest.mark.parametrize("name", sorted(load_dashboards()))
def test_dashboard_structure(name: str) -> None:
    board = load_dashboards()[name]
    uid = provisioned_datasource()["uid"]
    assert 36 <= board["schemaVersion"] <= 41
    assert board["time"] == {"from": "now-1h", "to": "now"}
    assert board["refresh"]
    ids = [p["id"] for p in all_panels(board)]
    assert len(ids) == len(set(ids)), f"duplicate panel ids in {name}: {ids}"

    for p in all_panels(board):
        where = f"{name}: panel {p['id']} {p['title']!r}"
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "influxdb", "uid": uid}, where
        assert p["targets"], f"{where} has no query"
        ref_ids = [t["refId"] for t in p["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), where
        for t in p["targets"]:
            assert t["datasource"] == {"type": "influxdb", "uid": uid}, where
            assert t.get("rawQuery") is True and t["query"].strip(), where
        defaults = p["fieldConfig"]["defaults"]
        if p["type"] in NUMERIC_PANELS:
            assert defaults.get("unit"), f"{where} has no unit"
            steps = defaults["thresholds"]["steps"]
            assert steps[0]["value"] is None, f"{where}: first threshold step must be the base"
            values = [s["value"] for s in steps[1:]]
            assert values == sorted(values), f"{where}: thresholds out of order"
        for o in p["fieldConfig"].get("overrides", []):
            for prop in o["properties"]:
                if prop["id"] == "unit":
                    assert prop["value"], where
        x = p["gridPos"]
        assert x["x"] >= 0 and x["x"] + x["w"] <= 24, where

    for v in board["templating"]["list"]:
        if v["type"] == "query":
            assert v["datasource"] == {"type": "influxdb", "uid": uid}, v["name"]


def test_units_are_the_physical_ones() -> None:
    """Power in dBm, ratios in dB, offsets in GHz: by the field each panel shows."""
    expected = {"_dbm": "dBm", "_db": "dB", "_ghz": "suffix: GHz", "temperature_c": "celsius"}
    checked = 0
    for board in load_dashboards().values():
        for p, t in influxql_targets(board):
            if p["type"] not in NUMERIC_PANELS:
                continue
            fields = re.findall(r'^SELECT \w+\("(\w+?)(?:_min|_max|_mean)?"\)', t["query"])
            for f in fields:
                for suffix, unit in expected.items():
                    if f.endswith(suffix):
                        assert p["fieldConfig"]["defaults"]["unit"] == unit, (p["title"], f)
                        checked += 1
    assert checked >= 10


def test_datasource_provisioning() -> None:
    ds = provisioned_datasource()
    assert ds["type"] == "influxdb"
    assert ds["uid"] == "odpm-influxdb"
    assert ds["jsonData"]["version"] == "InfluxQL"
    assert ds["jsonData"]["dbName"] == "odpm"
    assert "database" not in ds, "top-level `database` is deprecated; use jsonData.dbName"
    gm.duration_ms(ds["jsonData"]["timeInterval"])  # a valid Grafana interval
    text = DATASOURCES_YAML.read_text()
    assert "httpHeaderName1: Authorization" in text and "Token $INFLUX_TOKEN" in text


# --------------------------------------------------------------------------------------------
# Data: an hour of two simulated monitors, written as line protocol per the schema

DEVICES = ("odpm-sim-1", "odpm-sim-2")
N_CHANNELS = 80
DARK = (5, 40, 77)
SCAN_INTERVAL_S = 10
SCANS = 360  # one hour


@dataclass
class Filled:
    db: str
    now_ms: int
    devices: tuple[str, ...]
    dark: set[str]
    #: (device, channel, kind) whose newest event is a raise / a clear.
    active: set[tuple[str, str, str]] = field(default_factory=set)
    cleared: set[tuple[str, str, str]] = field(default_factory=set)


def _lines(now_us: int, rng: np.random.Generator) -> tuple[list[str], Filled]:
    """Line protocol for two monitors over the last hour, from the storage layer's encoder.

    The values come from a small numpy model; the encoding (measurement, tag and field names,
    two-digit channel tags, integer fields, ``all`` for device-wide alarms) is the forwarder's
    own (:mod:`odpm.storage.lineprotocol`), so the dashboards are checked against the schema
    as the service writes it.
    """
    enc = lp.ChannelLineEncoder()
    ch = np.arange(1, N_CHANNELS + 1, dtype=np.int64)
    lit = ~np.isin(ch, DARK)
    t_us = now_us - (SCANS - 1 - np.arange(SCANS)) * SCAN_INTERVAL_S * 1_000_000
    lines: list[str] = []
    filled = Filled("", now_us // 1000, DEVICES, {f"{c:02d}" for c in DARK})
    for d, dev in enumerate(DEVICES):
        # Power: a linear tilt across the band plus scan-to-scan noise; dark channels NaN.
        tilt = -1.5 - d
        base = -8.0 + tilt * (ch - 40.5) / 79.5 + rng.normal(0, 0.4, N_CHANNELS)
        power = base + rng.normal(0, 0.08, (SCANS, N_CHANNELS))
        osnr = 28.0 + rng.normal(0, 2.0, N_CHANNELS) + rng.normal(0, 0.3, (SCANS, N_CHANNELS))
        offset = rng.normal(0, 0.8, N_CHANNELS) + rng.normal(0, 0.05, (SCANS, N_CHANNELS))
        power[:, ~lit] = osnr[:, ~lit] = offset[:, ~lit] = np.nan
        values = np.round(np.stack([power, power - 0.05, osnr, offset], axis=1), 4)
        for i in range(SCANS):
            ts = int(t_us[i])
            lines.extend(enc.channel_lines(dev, ts, ch, lit, values[i]).splitlines())
            p_lit = power[i, lit]
            lines.append(
                lp.scan_line(
                    dev,
                    "trace",
                    ts,
                    total_power_dbm=round(float(10 * np.log10(np.sum(10 ** (p_lit / 10)))), 4),
                    lit_channels=int(lit.sum()),
                    tilt_db=tilt,
                    flatness_db=round(float(np.ptp(p_lit)), 4),
                    min_osnr_db=round(float(osnr[i, lit].min()), 4),
                    temperature_c=35 + 0.1 * d,
                ).rstrip("\n")
            )
        # 1-minute rollups of the same samples (6 scans per minute).
        per_min = 60 // SCAN_INTERVAL_S
        for m in range(SCANS // per_min):
            rows = slice(m * per_min, (m + 1) * per_min)
            minute_us = int(t_us[m * per_min] // 60_000_000 * 60_000_000)
            pw, on = power[rows][:, lit], osnr[rows][:, lit]
            stats = np.round(
                np.stack([pw.mean(0), pw.min(0), pw.max(0), on.mean(0), on.min(0), on.max(0)]), 4
            )
            lines.extend(enc.rollup_lines(dev, minute_us, ch[lit], stats, per_min).splitlines())
        # Alarms: channel 07 OSNR low raised 30 min ago (still active); channel 12 power low
        # raised 40 min ago and cleared 35 min ago; a device-wide event raised and cleared.
        events = [
            (7, "osnr_low", True, 14.2, 15.0, 30),
            (12, "power_low", True, -30.6, -30.0, 40),
            (12, "power_low", False, -29.2, -30.0, 35),
            (None, "total_power_low", True, -25.4, -25.0, 50),
            (None, "total_power_low", False, -24.1, -25.0, 49),
        ]
        for chan, kind, active, value, threshold, ago_min in events:
            line = lp.alarm_line(
                dev,
                now_us - ago_min * 60_000_000,
                kind=kind,
                channel=chan,
                active=active,
                value=value,
                threshold=threshold,
            )
            lines.append(line.rstrip("\n"))
        filled.active.add((dev, "07", "osnr_low"))
        filled.cleared |= {(dev, "12", "power_low"), (dev, "all", "total_power_low")}
    return lines, filled


def _fill(server: InfluxServer, db: str) -> Filled:
    lines, filled = _lines(int(time.time() * 1e6), np.random.default_rng(20240611))
    for start in range(0, len(lines), 5000):
        assert server.write("\n".join(lines[start : start + 5000]), db=db) == 204
    filled.db = db
    return filled


@pytest.fixture(scope="module")
def filled(influxd: InfluxServer) -> Iterator[Filled]:
    db = "odpm_grafana_" + uuid.uuid4().hex[:8]
    influxd.create_database(db)
    try:
        yield _fill(influxd, db)
    finally:
        influxd.drop_database(db)


def _run(server: InfluxServer, db: str, query: str) -> list[dict[str, Any]]:
    """Series of one statement; fails with InfluxDB's own message on an error."""
    result = server.query(query, db=db)
    (statement,) = result["results"]
    assert "error" not in statement, f"InfluxDB: {statement['error']}\n{query}"
    return list(statement.get("series", []))


# --------------------------------------------------------------------------------------------
# Variables: what Grafana would hold after running each variable query


def _variable_options(
    server: InfluxServer, filled: Filled, board: dict[str, Any], name: str, device: str
) -> tuple[str, ...]:
    var = next(v for v in board["templating"]["list"] if v["name"] == name)
    deps = {"device": gm.Variable("device", (device,))}
    q = gm.interpolate_variables(var["query"], deps)
    assert not gm.unexpanded(q), q
    series = _run(server, filled.db, q)
    return tuple(sorted(row[1] for s in series for row in s["values"]))


def _variables(
    server: InfluxServer,
    filled: Filled,
    board: dict[str, Any],
    device: str,
    channels: tuple[str, ...],
) -> dict[str, gm.Variable]:
    out = {}
    for v in board["templating"]["list"]:
        options = _variable_options(server, filled, board, v["name"], device)
        selected = (device,) if v["name"] == "device" else channels
        if not v["multi"]:
            # A single-value variable shows one channel: the first of the selection, or the
            # first option where the scenario asks for "All".
            selected = (options[0],) if gm.ALL in selected else selected[:1]
        out[v["name"]] = gm.Variable(
            v["name"],
            selected,
            options=options,
            multi=v["multi"],
            include_all=v["includeAll"],
            all_value=v.get("allValue"),
        )
    return out


@pytest.mark.parametrize("name", sorted(load_dashboards()))
def test_variable_queries_list_devices_and_channels(
    influxd: InfluxServer, filled: Filled, name: str
) -> None:
    board = load_dashboards()[name]
    assert _variable_options(influxd, filled, board, "device", DEVICES[0]) == DEVICES
    channels = _variable_options(influxd, filled, board, "channel", DEVICES[1])
    assert channels == tuple(f"{c:02d}" for c in range(1, N_CHANNELS + 1))


# --------------------------------------------------------------------------------------------
# Every target, expanded and run


@dataclass(frozen=True)
class Expect:
    """What a target must return: its columns, the tags it groups by, extra checks."""

    columns: tuple[str, ...]
    group_tags: tuple[str, ...] = ()
    #: One series per selected lit channel (the tag ``channel``).
    per_channel: bool = False
    check: str = ""


def _stat(f: str) -> Expect:
    return Expect(("time", f))


CHANNEL_TS = ("channel",)
EXPECTED: dict[tuple[str, str, str], Expect] = {
    ("odpm-overview", "Total power", "A"): _stat("total_power_dbm"),
    ("odpm-overview", "Tilt", "A"): _stat("tilt_db"),
    ("odpm-overview", "Flatness", "A"): _stat("flatness_db"),
    ("odpm-overview", "Lit channels", "A"): _stat("lit_channels"),
    ("odpm-overview", "Minimum OSNR", "A"): _stat("min_osnr_db"),
    ("odpm-overview", "Temperature", "A"): _stat("temperature_c"),
    ("odpm-overview", "Latest power by channel", "A"): Expect(
        ("time", "power_dbm"), CHANNEL_TS, per_channel=True, check="one_row"
    ),
    ("odpm-overview", "Latest OSNR by channel", "A"): Expect(
        ("time", "osnr_db"), CHANNEL_TS, per_channel=True, check="one_row"
    ),
    ("odpm-overview", "Power over time", "A"): Expect(
        ("time", "power_dbm"), CHANNEL_TS, per_channel=True, check="buckets"
    ),
    ("odpm-overview", "OSNR over time", "A"): Expect(
        ("time", "osnr_db"), CHANNEL_TS, per_channel=True, check="buckets"
    ),
    ("odpm-overview", "Channel power map", "A"): Expect(
        ("time", "power_dbm"), CHANNEL_TS, per_channel=True, check="buckets"
    ),
    ("odpm-overview", "Active alarms (now)", "A"): Expect(
        ("time", "active", "value", "threshold"), ("channel", "kind"), check="active_alarms"
    ),
    ("odpm-channel-detail", "Power", "A"): _stat("power_dbm"),
    ("odpm-channel-detail", "Signal power", "A"): _stat("signal_power_dbm"),
    ("odpm-channel-detail", "OSNR", "A"): _stat("osnr_db"),
    ("odpm-channel-detail", "Centre offset", "A"): _stat("offset_ghz"),
    ("odpm-channel-detail", "Power over time", "A"): Expect(("time", "power_dbm"), check="buckets"),
    ("odpm-channel-detail", "Power over time", "B"): Expect(("time", "min", "max"), check="band"),
    ("odpm-channel-detail", "OSNR over time", "A"): Expect(("time", "osnr_db"), check="buckets"),
    ("odpm-channel-detail", "OSNR over time", "B"): Expect(("time", "min", "max"), check="band"),
    ("odpm-channel-detail", "Centre frequency offset", "A"): Expect(
        ("time", "offset_ghz"), check="buckets"
    ),
    ("odpm-channel-detail", "Alarm events", "A"): Expect(
        ("time", "kind", "channel", "active", "value", "threshold"), check="channel_events"
    ),
}


def _target_keys() -> list[tuple[str, str, str]]:
    return [
        (b["uid"], p["title"], t["refId"])
        for b in load_dashboards().values()
        for p, t in influxql_targets(b)
    ]


def test_every_target_has_an_expectation() -> None:
    keys = _target_keys()
    assert len(keys) == len(set(keys)), "panel titles + refIds must identify targets"
    assert set(keys) == set(EXPECTED), (
        f"unreviewed targets: {set(keys) - set(EXPECTED)}; stale: {set(EXPECTED) - set(keys)}"
    )


@dataclass(frozen=True)
class Scenario:
    """A dashboard state: time range (relative to the data's newest point), selection, path."""

    name: str
    range_s: int
    raw_from: str
    channels: tuple[str, ...]
    relative: bool = False
    max_data_points: int = 1000


SCENARIOS = (
    # Three channels, one of them dark: the multi-value regex form /^(01|05|07)$/.
    Scenario("1h-multi", 3600, "now-1h", ("01", "05", "07")),
    Scenario("1h-all-browser-path", 3600, "now-1h", (gm.ALL,), relative=True),
    Scenario("7d-single", 7 * 86400, "now-7d", ("07",), max_data_points=600),
)


def _selected_lit(variables: dict[str, gm.Variable], filled: Filled) -> set[str]:
    ch = variables["channel"]
    chosen = set(ch.options) if gm.ALL in ch.selected else set(ch.selected)
    return chosen - filled.dark


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
@pytest.mark.parametrize("key", sorted(EXPECTED), ids=lambda k: f"{k[0]}:{k[1]}:{k[2]}")
def test_target_returns_its_series(
    influxd: InfluxServer, filled: Filled, key: tuple[str, str, str], scenario: Scenario
) -> None:
    uid, title, ref_id = key
    board = next(b for b in load_dashboards().values() if b["uid"] == uid)
    tgt = next(t for p, t in influxql_targets(board) if (p["title"], t["refId"]) == (title, ref_id))
    expect = EXPECTED[key]
    device = DEVICES[1]
    variables = _variables(influxd, filled, board, device, scenario.channels)
    # Grafana's "now" is the moment the dashboard refreshes: just after the newest point.
    to_ms = filled.now_ms + 1000
    time_range = gm.TimeRange(to_ms - scenario.range_s * 1000, to_ms, scenario.raw_from, "now")
    interval_ms = gm.calculate_interval_ms(
        time_range.span_ms,
        scenario.max_data_points,
        provisioned_datasource()["jsonData"]["timeInterval"],
    )
    query = gm.expand(
        tgt["query"],
        variables=variables,
        time_range=time_range,
        interval_ms=interval_ms,
        relative=scenario.relative,
    )
    assert not gm.unexpanded(query), f"left unexpanded in {query}"
    series = _run(influxd, filled.db, query)
    assert series, f"no series for {key} in {scenario.name}:\n{query}"

    for s in series:
        assert tuple(s["columns"]) == expect.columns, (s["columns"], query)
        assert set(s.get("tags") or {}) == set(expect.group_tags), (s.get("tags"), query)
        for col in range(1, len(expect.columns)):
            assert any(row[col] is not None for row in s["values"]), (expect.columns[col], query)

    lit = _selected_lit(variables, filled)
    if expect.per_channel:
        got = {s["tags"]["channel"] for s in series}
        assert got == lit, f"{key}: channels {sorted(got)} != selected lit {sorted(lit)}"
    if expect.check == "one_row":
        assert all(len(s["values"]) == 1 for s in series)
    elif expect.check == "buckets":
        # GROUP BY time($__interval): about range/interval buckets, at least the hour of data.
        data_buckets = min(scenario.range_s * 1000, SCANS * SCAN_INTERVAL_S * 1000) / max(
            interval_ms, SCAN_INTERVAL_S * 1000
        )
        for s in series:
            filled_buckets = sum(row[1] is not None for row in s["values"])
            assert filled_buckets >= 0.8 * data_buckets, (filled_buckets, data_buckets, query)
    elif expect.check == "band":
        for s in series:
            assert all(lo <= hi for _, lo, hi in s["values"]), query
    elif expect.check == "active_alarms":
        rows = {(s["tags"]["channel"], s["tags"]["kind"]) for s in series}
        want = {(c, k) for d, c, k in filled.active if d == device}
        assert rows == want, f"active alarms {rows} != {want}"
        assert all(row[1] is True for s in series for row in s["values"])
    elif expect.check == "channel_events":
        (s,) = series
        channels = {row[2] for row in s["values"]}
        chosen = set(variables["channel"].selected)
        assert channels <= chosen | {"all"}, channels
    else:
        assert expect.check == "", expect.check
