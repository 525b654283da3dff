"""The provisioned Grafana dashboards, checked as Grafana would load them and run against data.

Two halves:

* JSON checks: unique uids and panel ids, every panel, target and variable on the provisioned
  data source uid, units on every numeric panel, the committed JSON equal to what
  ``config/grafana/build_dashboards.py`` writes.
* Query checks: every InfluxQL target (and every variable query) expanded the way Grafana
  expands it (:mod:`tests.support.grafana_macros`) and run against a real ``influxd`` filled
  by a real run of ``odpm serve`` on two simulated monitors
  (:mod:`tests.support.service_run`); each must return the series it is drawn from -- the
  expected columns, tags, channels and alarms -- for a multi-value channel selection, for
  "All", through the browser-side (relative time) path and over a 7-day range.

What each panel must show follows from how the simulated line was set up (dark channels, wide
channels without a resolvable OSNR, thresholds that hold or clear alarms), not from reading
the data back.  The run lasts until ``channel_1m`` has a completed minute: 20-80 s, so the
module is ``slow`` (it still runs in CI and in the README's test command).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from odpm.storage.lineprotocol import alarm_line
from tests.support import grafana_macros as gm
from tests.support.influxd import InfluxServer
from tests.support.service_run import (
    NOMINAL_POWER_DBM,
    LinePlan,
    ServiceRun,
    simulated_service_run,
)

ROOT = Path(__file__).resolve().parents[1]
GRAFANA = ROOT / "config" / "grafana"
DASHBOARD_DIR = GRAFANA / "dashboards"
DATASOURCES_YAML = GRAFANA / "provisioning" / "datasources" / "odpm.yaml"

NUMERIC_PANELS = {"stat", "gauge", "bargauge", "timeseries", "barchart", "heatmap", "trend"}

pytestmark = [pytest.mark.influx, pytest.mark.slow]


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
# Data: a real run of the service on two simulated monitors

PLAN = LinePlan()
DEVICES = ("odpm-sim-1", "odpm-sim-2")


@pytest.fixture(scope="module")
def filled(influxd: InfluxServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceRun]:
    """``odpm serve`` on two simulators, forwarding to a fresh database, until every
    measurement the dashboards read holds data (``channel_1m`` needs a completed minute)."""
    db = "odpm_grafana_" + uuid.uuid4().hex[:8]
    influxd.create_database(db)
    try:
        with simulated_service_run(
            influxd, db, tmp_path_factory.mktemp("service"), plan=PLAN, devices=DEVICES
        ) as run:
            assert run.exit_code == 0, run.log[-3000:]
            yield run
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
    server: InfluxServer, filled: ServiceRun, board: dict[str, Any], name: str, device: str
) -> tuple[str, ...]:
    var = next(v for v in board["templating"]["list"] if v["name"] == name)
    deps = {"device": gm.Variable("device", (device,))}
    q = gm.interpolate_variables(var["query"], deps)
    assert not gm.unexpanded(q), q
    series = _run(server, filled.db, q)
    return tuple(sorted(row[1] for s in series for row in s["values"]))


def _variables(
    server: InfluxServer,
    filled: ServiceRun,
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
    influxd: InfluxServer, filled: ServiceRun, name: str
) -> None:
    board = load_dashboards()[name]
    assert _variable_options(influxd, filled, board, "device", DEVICES[0]) == DEVICES
    channels = _variable_options(influxd, filled, board, "channel", DEVICES[1])
    assert channels == PLAN.all_tags


# --------------------------------------------------------------------------------------------
# Every target, expanded and run


@dataclass(frozen=True)
class Expect:
    """What a target must return: its columns, the tags it groups by, extra checks."""

    columns: tuple[str, ...]
    group_tags: tuple[str, ...] = ()
    #: One series per selected channel that has this quantity (tag ``channel``): ``power``
    #: exists for every channel (a dark slot's power is its noise floor), ``osnr`` only where
    #: a signal is present and its noise floor resolvable.
    per_channel: str = ""
    check: str = ""
    #: Columns the schema omits where they do not apply (a ``los`` alarm crosses no
    #: threshold): non-null in some series, not necessarily in each.
    optional: tuple[str, ...] = ()
    #: Columns a run need not fill at all (``reason`` is written only for a clear that its
    #: value did not make; tested on its own in test_alarm_events_show_why_an_alarm_cleared).
    may_be_empty: tuple[str, ...] = ()


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
        ("time", "power_dbm"), CHANNEL_TS, per_channel="power", check="one_row"
    ),
    ("odpm-overview", "Latest OSNR by channel", "A"): Expect(
        ("time", "osnr_db"), CHANNEL_TS, per_channel="osnr", check="one_row"
    ),
    ("odpm-overview", "Power over time", "A"): Expect(
        ("time", "power_dbm"), CHANNEL_TS, per_channel="power", check="buckets"
    ),
    ("odpm-overview", "OSNR over time", "A"): Expect(
        ("time", "osnr_db"), CHANNEL_TS, per_channel="osnr", check="buckets"
    ),
    ("odpm-overview", "Channel power map", "A"): Expect(
        ("time", "power_dbm"), CHANNEL_TS, per_channel="power", check="buckets"
    ),
    ("odpm-overview", "Active alarms (now)", "A"): Expect(
        ("time", "active", "value", "threshold"),
        ("channel", "kind"),
        check="active_alarms",
        optional=("value", "threshold"),
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
        ("time", "kind", "channel", "active", "value", "threshold", "reason"),
        check="channel_events",
        optional=("value", "threshold", "reason"),
        may_be_empty=("reason",),
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
    """A dashboard state: time range ending at the test's "now", selection, path."""

    name: str
    range_s: int
    raw_from: str
    channels: tuple[str, ...]
    relative: bool = False
    max_data_points: int = 1000


SCENARIOS = (
    # A clean channel, a dark one (05), a wide one without OSNR (20), a clean one with an
    # active alarm (07): the multi-value regex form /^(01|05|07|20)$/.
    Scenario("1h-multi", 3600, "now-1h", ("01", "05", "07", "20")),
    Scenario("1h-all-browser-path", 3600, "now-1h", (gm.ALL,), relative=True),
    # Long range: Grafana's interval grows to minutes and the detail bands read channel_1m.
    Scenario("7d-single", 7 * 86400, "now-7d", ("07",), max_data_points=600),
)

#: A dark slot reads the noise floor, far under the simulated channels' -20 dBm.
DARK_BELOW_DBM = NOMINAL_POWER_DBM - 20


def _selected(variables: dict[str, gm.Variable]) -> set[str]:
    ch = variables["channel"]
    return set(ch.options) if gm.ALL in ch.selected else set(ch.selected)


def test_service_run_wrote_every_measurement(filled: ServiceRun) -> None:
    """The data the dashboards are checked against: a complete, clean run of the service."""
    print(
        f"\nservice run: {filled.fill_s:.1f} s until channel_1m was forwarded for both devices; "
        f"{(filled.last_ms - filled.first_ms) / 1000:.1f} s of scans; points {filled.counts}"
    )
    assert filled.counts["channel"] == filled.counts["scan"] * PLAN.channels
    assert filled.counts["scan"] >= 2 * len(DEVICES)
    assert filled.counts["alarm"] > 0 and filled.counts["channel_1m"] > 0


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
@pytest.mark.parametrize("key", sorted(EXPECTED), ids=lambda k: f"{k[0]}:{k[1]}:{k[2]}")
def test_target_returns_its_series(
    influxd: InfluxServer, filled: ServiceRun, key: tuple[str, str, str], scenario: Scenario
) -> None:
    uid, title, ref_id = key
    board = next(b for b in load_dashboards().values() if b["uid"] == uid)
    tgt = next(t for p, t in influxql_targets(board) if (p["title"], t["refId"]) == (title, ref_id))
    expect = EXPECTED[key]
    device = DEVICES[1]
    variables = _variables(influxd, filled, board, device, scenario.channels)
    # Grafana's "now" is the moment the dashboard refreshes: now, just after the run.
    to_ms = int(time.time() * 1000)
    time_range = gm.TimeRange(to_ms - scenario.range_s * 1000, to_ms, scenario.raw_from, "now")
    assert time_range.from_ms < filled.first_ms, "the range must cover the whole run"
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
        for col, name in enumerate(expect.columns[1:], start=1):
            if name not in expect.optional:
                assert any(row[col] is not None for row in s["values"]), (name, query)
    for col, name in enumerate(expect.columns[1:], start=1):
        column = [row[col] for s in series for row in s["values"]]
        assert name in expect.may_be_empty or any(v is not None for v in column), (name, query)

    selected = _selected(variables)
    got = {s["tags"]["channel"] for s in series} if expect.per_channel else set()
    if expect.per_channel == "power":
        assert got == selected, f"{key}: channels {sorted(got ^ selected)} differ from selection"
        for s in series:
            values = [row[1] for row in s["values"] if row[1] is not None]
            dark = s["tags"]["channel"] in PLAN.dark_tags
            assert all((v < DARK_BELOW_DBM) == dark for v in values), (s["tags"], values[:5])
    elif expect.per_channel == "osnr":
        must = selected & PLAN.osnr_tags
        may = must | (selected & PLAN.wide_neighbour_tags)
        assert must <= got <= may, f"{key}: OSNR for {sorted(got)}; must {sorted(must)}"
    if expect.check == "one_row":
        assert all(len(s["values"]) == 1 for s in series)
    elif expect.check == "buckets":
        # GROUP BY time($__interval): a value in (nearly) every bucket the run spans.
        step_ms = max(interval_ms, PLAN.interval_s * 1000)
        spanned = (filled.last_ms - filled.first_ms) / step_ms
        for s in series:
            if (s.get("tags") or {}).get("channel") in PLAN.wide_neighbour_tags:
                continue  # an OSNR that may resolve in some scans only
            with_value = sum(row[1] is not None for row in s["values"])
            assert with_value >= max(1, int(0.8 * spanned)), (with_value, spanned, query)
    elif expect.check == "band":
        for s in series:
            assert all(lo <= hi for _, lo, hi in s["values"]), query
    elif expect.check == "active_alarms":
        rows = {(s["tags"]["channel"], s["tags"]["kind"]) for s in series}
        missing = PLAN.required_active - rows
        extra = rows - PLAN.possible_active
        assert not missing and not extra, f"active alarms: missing {missing}, extra {extra}"
        assert all(row[1] is True for s in series for row in s["values"])
    elif expect.check == "channel_events":
        (s,) = series
        channels = {row[2] for row in s["values"]}
        assert channels <= set(variables["channel"].selected) | {"all"}, channels
    else:
        assert expect.check == "", expect.check


def test_alarm_events_show_why_an_alarm_cleared(influxd: InfluxServer, influx_db: str) -> None:
    """The channel panel's events table carries each clear's ``reason``: an OSNR alarm
    that cleared because the channel went dark (``not_measured``) is told apart from one
    whose OSNR recovered (no reason) and from a threshold switched off."""
    t0_us = int(time.time() * 1e6) - 60_000_000
    events = [
        ("osnr_low", 1, True, 12.0, 15.0, None),
        ("osnr_low", 1, False, None, 15.0, "not_measured"),
        ("power_low", 1, True, -31.0, -30.0, None),
        ("power_low", 1, False, -31.0, None, "threshold_off"),
        ("osnr_low", 2, True, 12.0, 15.0, None),
        ("osnr_low", 2, False, 16.0, 15.0, None),
    ]
    influxd.write(
        "".join(
            alarm_line(
                "dev", t0_us + i * 1_000_000, kind=k, channel=c, active=a, value=v,
                threshold=t, reason=r,
            )
            for i, (k, c, a, v, t, r) in enumerate(events)
        ),
        influx_db,
    )  # fmt: skip
    board = next(b for b in load_dashboards().values() if b["uid"] == "odpm-channel-detail")
    (tgt,) = [t for p, t in influxql_targets(board) if p["title"] == "Alarm events"]
    to_ms = int(time.time() * 1000)
    rows: dict[str, list[tuple[str, bool, str | None]]] = {}
    for channel in ("01", "02"):
        query = gm.expand(
            tgt["query"],
            variables={
                "device": gm.Variable("device", ("dev",)),
                "channel": gm.Variable("channel", (channel,)),
            },
            time_range=gm.TimeRange(to_ms - 3_600_000, to_ms, "now-1h", "now"),
            interval_ms=1000,
        )
        (series,) = _run(influxd, influx_db, query)
        cols = series["columns"]
        rows[channel] = [
            (r[cols.index("kind")], r[cols.index("active")], r[cols.index("reason")])
            for r in series["values"]
        ]
    assert rows["01"] == [
        ("power_low", False, "threshold_off"),
        ("power_low", True, None),
        ("osnr_low", False, "not_measured"),
        ("osnr_low", True, None),
    ]
    assert rows["02"] == [("osnr_low", False, None), ("osnr_low", True, None)]
