"""Write the odpm Grafana dashboards (``config/grafana/dashboards/*.json``).

The dashboards are plain JSON because that is what Grafana's file provider loads and what
a reviewer can diff; this script exists so that panel ids, grid positions, data source
references, units and thresholds are written once instead of copied twenty times by hand.
``tests/test_dashboards.py`` checks that the committed JSON is exactly what this script
writes, so edit here and run::

    python3 config/grafana/build_dashboards.py

Every query is raw InfluxQL against the schema in ``docs/schema.md`` (measurements
``channel``, ``scan``, ``alarm``, ``channel_1m``), uses only the macros Grafana expands for
InfluxQL (``$timeFilter``, ``$__interval``) and filters tags with the regex form
``/^$var$/``, which is how Grafana renders single, multi-value and "All" selections alike.
The alarm thresholds mirror the defaults in ``config/odpm.toml`` (``[alarms]``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

Json = dict[str, Any]

DASHBOARD_DIR = Path(__file__).resolve().parent / "dashboards"
DATASOURCE: Json = {"type": "influxdb", "uid": "odpm-influxdb"}
SCHEMA_VERSION = 39
OVERVIEW_UID = "odpm-overview"
DETAIL_UID = "odpm-channel-detail"

#: Where a tag filter on the selected device(s) and channel(s) goes in every query.
DEVICE = '"device" =~ /^$device$/'
CHANNELS = '"channel" =~ /^$channel$/'

# Thresholds: Grafana colours a value by the last step whose value it reaches; the first
# step (value None) is the colour below every other step.  Numbers follow config/odpm.toml.
POWER_STEPS = [("red", None), ("green", -30.0), ("orange", 3.0), ("red", 5.0)]
TOTAL_POWER_STEPS = [("red", None), ("green", -25.0), ("red", 20.0)]
OSNR_STEPS = [("red", None), ("orange", 15.0), ("green", 20.0)]
TILT_STEPS = [("red", None), ("orange", -3.0), ("green", -1.5), ("orange", 1.5), ("red", 3.0)]
FLATNESS_STEPS = [("green", None), ("orange", 3.0), ("red", 6.0)]
OFFSET_STEPS = [("red", None), ("orange", -5.0), ("green", -2.5), ("orange", 2.5), ("red", 5.0)]
LIT_STEPS = [("red", None), ("green", 1.0)]
TEMPERATURE_STEPS = [("blue", None), ("green", 15.0), ("orange", 45.0), ("red", 60.0)]

GHZ = "suffix: GHz"  # Grafana has no GHz unit id for frequency offsets; a suffix unit shows it.


def thresholds(steps: list[tuple[str, float | None]]) -> Json:
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for c, v in steps]}


def target(ref_id: str, query: str, *, alias: str = "", result_format: str = "time_series") -> Json:
    t: Json = {
        "refId": ref_id,
        "datasource": DATASOURCE,
        "rawQuery": True,
        "query": query,
        "resultFormat": result_format,
    }
    if alias:
        t["alias"] = alias
    return t


def field_config(
    unit: str,
    steps: list[tuple[str, float | None]],
    *,
    decimals: int | None = None,
    custom: Json | None = None,
    color_mode: str = "thresholds",
    overrides: list[Json] | None = None,
    links: list[Json] | None = None,
) -> Json:
    defaults: Json = {
        "unit": unit,
        "color": {"mode": color_mode},
        "thresholds": thresholds(steps),
    }
    if decimals is not None:
        defaults["decimals"] = decimals
    if custom is not None:
        defaults["custom"] = custom
    if links:
        defaults["links"] = links
    return {"defaults": defaults, "overrides": overrides or []}


class Layout:
    """Hands out panel ids and grid positions (24 columns wide) in reading order."""

    def __init__(self) -> None:
        self._next_id = 1
        self._x = 0
        self._y = 0
        self._row_h = 0

    def place(self, w: int, h: int) -> tuple[int, Json]:
        if self._x + w > 24:
            self._x, self._y, self._row_h = 0, self._y + self._row_h, 0
        pos = {"x": self._x, "y": self._y, "w": w, "h": h}
        self._x += w
        self._row_h = max(self._row_h, h)
        panel_id = self._next_id
        self._next_id += 1
        return panel_id, pos


def panel(
    layout: Layout,
    kind: str,
    title: str,
    description: str,
    targets: list[Json],
    fc: Json,
    options: Json,
    *,
    w: int,
    h: int,
    transformations: list[Json] | None = None,
) -> Json:
    panel_id, pos = layout.place(w, h)
    p: Json = {
        "id": panel_id,
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "gridPos": pos,
        "targets": targets,
        "fieldConfig": fc,
        "options": options,
    }
    if transformations:
        p["transformations"] = transformations
    return p


def stat(
    layout: Layout,
    title: str,
    description: str,
    field: str,
    unit: str,
    steps: list[tuple[str, float | None]],
    *,
    measurement: str = "scan",
    extra_where: str = "",
    decimals: int = 1,
    w: int = 4,
) -> Json:
    query = (
        f'SELECT last("{field}") AS "{field}" FROM "{measurement}" '
        f"WHERE {DEVICE}{extra_where} AND $timeFilter"
    )
    return panel(
        layout,
        "stat",
        title,
        description,
        [target("A", query)],
        field_config(unit, steps, decimals=decimals),
        {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "background",
            "graphMode": "area",
            "justifyMode": "center",
            "textMode": "value",
            "orientation": "auto",
        },
        w=w,
        h=4,
    )


def timeseries_custom(*, fill_opacity: int = 0, span_nulls: bool = False) -> Json:
    return {
        "drawStyle": "line",
        "lineWidth": 1,
        "fillOpacity": fill_opacity,
        "spanNulls": span_nulls,
        "showPoints": "never",
        "axisPlacement": "auto",
        "thresholdsStyle": {"mode": "off"},
    }


TIMESERIES_OPTIONS: Json = {
    "legend": {
        "displayMode": "table",
        "placement": "right",
        "calcs": ["lastNotNull", "min", "max"],
    },
    "tooltip": {"mode": "multi", "sort": "desc"},
}


def detail_link() -> Json:
    return {
        "title": "Channel ${__data.fields.channel} detail",
        "url": f"/d/{DETAIL_UID}/odpm-channel-detail?var-device=${{device}}"
        "&var-channel=${__data.fields.channel}&${__url_time_range}",
    }


def latest_by_channel(
    layout: Layout, title: str, description: str, field: str, unit: str, steps: list[Any]
) -> Json:
    """The newest value of every selected channel as one bar per channel.

    Table format gives one row per series with the ``channel`` tag as a column; the two-digit
    tag values sort in channel order, so the x axis reads 01..80.
    """
    query = (
        f'SELECT last("{field}") AS "{field}" FROM "channel" '
        f'WHERE {DEVICE} AND {CHANNELS} AND $timeFilter GROUP BY "channel"'
    )
    return panel(
        layout,
        "barchart",
        title,
        description,
        [target("A", query, result_format="table")],
        field_config(
            unit,
            steps,
            decimals=1,
            custom={"fillOpacity": 80, "lineWidth": 0, "axisSoftMin": None},
            links=[detail_link()],
        ),
        {
            "xField": "channel",
            "orientation": "vertical",
            "showValue": "never",
            "groupWidth": 0.8,
            "barWidth": 0.9,
            "xTickLabelRotation": -90,
            "xTickLabelSpacing": 0,
            "legend": {"showLegend": False, "displayMode": "list", "placement": "bottom"},
            "tooltip": {"mode": "single", "sort": "none"},
        },
        w=24,
        h=8,
        transformations=[{"id": "organize", "options": {"excludeByName": {"Time": True}}}],
    )


def over_time(
    layout: Layout, title: str, description: str, field: str, unit: str, steps: list[Any]
) -> Json:
    query = (
        f'SELECT mean("{field}") AS "{field}" FROM "channel" '
        f"WHERE {DEVICE} AND {CHANNELS} AND $timeFilter "
        f'GROUP BY time($__interval), "channel" fill(null)'
    )
    return panel(
        layout,
        "timeseries",
        title,
        description,
        [target("A", query, alias="ch $tag_channel")],
        field_config(
            unit, steps, decimals=2, custom=timeseries_custom(), color_mode="palette-classic"
        ),
        TIMESERIES_OPTIONS,
        w=12,
        h=9,
    )


def device_variable() -> Json:
    return {
        "name": "device",
        "label": "Monitor",
        "type": "query",
        "datasource": DATASOURCE,
        "query": 'SHOW TAG VALUES FROM "scan" WITH KEY = "device"',
        "definition": 'SHOW TAG VALUES FROM "scan" WITH KEY = "device"',
        "refresh": 1,
        "sort": 1,
        "multi": False,
        "includeAll": False,
        "current": {},
        "options": [],
        "hide": 0,
    }


def channel_variable(*, multi: bool) -> Json:
    query = f'SHOW TAG VALUES FROM "channel" WITH KEY = "channel" WHERE {DEVICE}'
    v: Json = {
        "name": "channel",
        "label": "Channel",
        "type": "query",
        "datasource": DATASOURCE,
        "query": query,
        "definition": query,
        "refresh": 1,
        "sort": 1,
        "multi": multi,
        "includeAll": multi,
        "current": {},
        "options": [],
        "hide": 0,
    }
    if multi:
        # "All" becomes the regex .* instead of an 80-way alternation.
        v["allValue"] = ".*"
        v["current"] = {"selected": True, "text": ["All"], "value": ["$__all"]}
    return v


def dashboard(
    uid: str, title: str, description: str, panels: list[Json], variables: list[Json]
) -> Json:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["odpm"],
        "timezone": "browser",
        "editable": False,
        "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {"refresh_intervals": ["5s", "10s", "30s", "1m", "5m", "15m"]},
        "refresh": "10s",
        "liveNow": False,
        "fiscalYearStartMonth": 0,
        "links": [
            {
                "title": "ODPM dashboards",
                "type": "dashboards",
                "tags": ["odpm"],
                "asDropdown": True,
                "includeVars": True,
                "keepTime": True,
                "icon": "external link",
                "targetBlank": False,
            }
        ],
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "templating": {"list": variables},
        "panels": panels,
    }


def overview() -> Json:
    layout = Layout()
    panels = [
        stat(
            layout,
            "Total power",
            "Total optical power over all ports, newest scan.",
            "total_power_dbm",
            "dBm",
            TOTAL_POWER_STEPS,
        ),
        stat(
            layout,
            "Tilt",
            "Linear fit slope of channel power across the band, end to end.",
            "tilt_db",
            "dB",
            TILT_STEPS,
        ),
        stat(
            layout,
            "Flatness",
            "Max minus min power over lit channels.",
            "flatness_db",
            "dB",
            FLATNESS_STEPS,
        ),
        stat(
            layout,
            "Lit channels",
            "Channels with a detected signal in the newest scan.",
            "lit_channels",
            "none",
            LIT_STEPS,
            decimals=0,
        ),
        stat(
            layout,
            "Minimum OSNR",
            "Lowest OSNR (0.1 nm, IEC 61280-2-9) over lit channels.",
            "min_osnr_db",
            "dB",
            OSNR_STEPS,
        ),
        stat(
            layout,
            "Temperature",
            "Monitor temperature as reported by the device.",
            "temperature_c",
            "celsius",
            TEMPERATURE_STEPS,
        ),
        latest_by_channel(
            layout,
            "Latest power by channel",
            "Newest power of each selected channel within the time range (click a bar for the "
            "channel detail). Dark channels have no power value and no bar.",
            "power_dbm",
            "dBm",
            POWER_STEPS,
        ),
        latest_by_channel(
            layout,
            "Latest OSNR by channel",
            "Newest OSNR (0.1 nm reference bandwidth) of each selected channel. Channels whose "
            "noise floor is not resolvable have no OSNR and no bar.",
            "osnr_db",
            "dB",
            OSNR_STEPS,
        ),
        over_time(
            layout,
            "Power over time",
            "Mean channel power per interval, selected channels.",
            "power_dbm",
            "dBm",
            POWER_STEPS,
        ),
        over_time(
            layout,
            "OSNR over time",
            "Mean OSNR per interval, selected channels.",
            "osnr_db",
            "dB",
            OSNR_STEPS,
        ),
        panel(
            layout,
            "heatmap",
            "Channel power map",
            "Channel (rows, 01 at the bottom) against time; colour is mean power per interval. "
            "A dark stripe is a channel that went dark.",
            [
                target(
                    "A",
                    f'SELECT mean("power_dbm") AS "power_dbm" FROM "channel" '
                    f"WHERE {DEVICE} AND {CHANNELS} AND $timeFilter "
                    f'GROUP BY time($__interval), "channel" fill(null)',
                    alias="$tag_channel",
                )
            ],
            field_config(
                "dBm",
                POWER_STEPS,
                decimals=1,
                color_mode="thresholds",
                custom={
                    "scaleDistribution": {"type": "linear"},
                    "hideFrom": {"legend": False, "tooltip": False, "viz": False},
                },
            ),
            {
                "calculate": False,
                "cellGap": 0,
                "color": {
                    "mode": "scheme",
                    "scheme": "Turbo",
                    "steps": 64,
                    "exponent": 0.5,
                    "fill": "dark-orange",
                    "reverse": False,
                },
                "rowsFrame": {"layout": "auto", "value": "Power"},
                "yAxis": {
                    "axisPlacement": "left",
                    "unit": "none",
                    "reverse": False,
                    "axisLabel": "channel",
                },
                "cellValues": {"unit": "dBm", "decimals": 1},
                "tooltip": {"mode": "single", "yHistogram": False, "showColorScale": True},
                "legend": {"show": True},
                "exemplars": {"color": "rgba(255,0,255,0.7)"},
                "filterValues": {"le": 1e-9},
                "showValue": "never",
            },
            w=24,
            h=10,
        ),
        panel(
            layout,
            "table",
            "Active alarms (now)",
            "Alarms whose newest event is a raise, over the journal retention (7 days), "
            "independent of the time picker: an alarm raised yesterday and still active shows. "
            "Channel 'all' is device-wide: total power, and device_lost (no scan from the "
            "monitor for alarms.device_lost_s; its value is the seconds without a scan).",
            [
                target(
                    "A",
                    'SELECT "active", "value", "threshold" FROM ('
                    'SELECT "active", "value", "threshold" FROM "alarm" '
                    f"WHERE {DEVICE} AND time >= now() - 7d "
                    'GROUP BY "channel", "kind" ORDER BY time DESC LIMIT 1'
                    ') WHERE "active" = true GROUP BY "channel", "kind" ORDER BY time DESC',
                    result_format="table",
                )
            ],
            field_config("none", [("red", None)], decimals=2, custom={"align": "auto"}),
            {
                "showHeader": True,
                "cellHeight": "sm",
                "footer": {"show": False},
                "sortBy": [{"displayName": "Time", "desc": True}],
            },
            w=24,
            h=8,
            transformations=[
                {
                    "id": "organize",
                    "options": {
                        "excludeByName": {"active": True},
                        "indexByName": {
                            "Time": 0,
                            "channel": 1,
                            "kind": 2,
                            "value": 3,
                            "threshold": 4,
                        },
                        "renameByName": {
                            "Time": "Raised",
                            "channel": "Channel",
                            "kind": "Alarm",
                            "value": "Value",
                            "threshold": "Threshold",
                        },
                    },
                }
            ],
        ),
    ]
    return dashboard(
        OVERVIEW_UID,
        "ODPM overview",
        "Channel power, OSNR and alarms of one monitor, on its channel plan (80 x 50 GHz "
        "by default, or a flexible grid).",
        panels,
        [device_variable(), channel_variable(multi=True)],
    )


def band_overrides(prefix: str) -> list[Json]:
    """Draw ``<prefix> max`` filled down to ``<prefix> min``: the 1-minute min/max envelope."""
    return [
        {
            "matcher": {"id": "byName", "options": f"{prefix} max"},
            "properties": [
                {"id": "custom.fillBelowTo", "value": f"{prefix} min"},
                {"id": "custom.lineWidth", "value": 0},
                {"id": "custom.fillOpacity", "value": 25},
                {"id": "color", "value": {"mode": "fixed", "fixedColor": "blue"}},
            ],
        },
        {
            "matcher": {"id": "byName", "options": f"{prefix} min"},
            "properties": [
                {"id": "custom.lineWidth", "value": 0},
                {"id": "color", "value": {"mode": "fixed", "fixedColor": "blue"}},
            ],
        },
    ]


def with_band(
    layout: Layout, title: str, description: str, field: str, unit: str, steps: list[Any]
) -> Json:
    """Raw mean per interval as a line, over the min/max band from the 1-minute rollups.

    For ranges of hours or days the band is what shows excursions the mean hides; for the
    last hour it is a per-minute envelope around the raw line.
    """
    where = f"WHERE {DEVICE} AND {CHANNELS} AND $timeFilter"
    raw = (
        f'SELECT mean("{field}") AS "{field}" FROM "channel" {where} '
        f"GROUP BY time($__interval) fill(null)"
    )
    rollup = (
        f'SELECT min("{field}_min") AS "min", max("{field}_max") AS "max" FROM "channel_1m" '
        f"{where} GROUP BY time($__interval) fill(none)"
    )
    return panel(
        layout,
        "timeseries",
        title,
        description,
        [target("A", raw, alias="$col"), target("B", rollup, alias="1m $col")],
        field_config(
            unit,
            steps,
            decimals=2,
            custom=timeseries_custom(),
            color_mode="palette-classic",
            overrides=band_overrides("1m"),
        ),
        TIMESERIES_OPTIONS,
        w=24,
        h=9,
    )


def channel_detail() -> Json:
    layout = Layout()
    where_ch = f" AND {CHANNELS}"
    panels = [
        stat(
            layout,
            "Power",
            "Newest channel power.",
            "power_dbm",
            "dBm",
            POWER_STEPS,
            measurement="channel",
            extra_where=where_ch,
            decimals=2,
            w=6,
        ),
        stat(
            layout,
            "Signal power",
            "Newest signal power (noise subtracted).",
            "signal_power_dbm",
            "dBm",
            POWER_STEPS,
            measurement="channel",
            extra_where=where_ch,
            decimals=2,
            w=6,
        ),
        stat(
            layout,
            "OSNR",
            "Newest OSNR, 0.1 nm reference bandwidth.",
            "osnr_db",
            "dB",
            OSNR_STEPS,
            measurement="channel",
            extra_where=where_ch,
            w=6,
        ),
        stat(
            layout,
            "Centre offset",
            "Newest offset of the signal centre from the ITU grid.",
            "offset_ghz",
            GHZ,
            OFFSET_STEPS,
            measurement="channel",
            extra_where=where_ch,
            decimals=2,
            w=6,
        ),
        with_band(
            layout,
            "Power over time",
            "Mean power per interval (line) and the 1-minute min/max band.",
            "power_dbm",
            "dBm",
            POWER_STEPS,
        ),
        with_band(
            layout,
            "OSNR over time",
            "Mean OSNR per interval (line) and the 1-minute min/max band.",
            "osnr_db",
            "dB",
            OSNR_STEPS,
        ),
        panel(
            layout,
            "timeseries",
            "Centre frequency offset",
            "Offset of the measured signal centre from the ITU-T G.694.1 grid frequency.",
            [
                target(
                    "A",
                    'SELECT mean("offset_ghz") AS "offset_ghz" FROM "channel" '
                    f"WHERE {DEVICE} AND {CHANNELS} AND $timeFilter "
                    "GROUP BY time($__interval) fill(null)",
                    alias="$col",
                )
            ],
            field_config(
                GHZ,
                OFFSET_STEPS,
                decimals=2,
                custom={**timeseries_custom(), "thresholdsStyle": {"mode": "dashed"}},
                color_mode="palette-classic",
            ),
            TIMESERIES_OPTIONS,
            w=12,
            h=8,
        ),
        panel(
            layout,
            "table",
            "Alarm events",
            "Raise and clear events of this channel and of the whole monitor (channel 'all', "
            "e.g. device_lost) in the time range, newest first. A clear's reason says why it "
            "cleared when it was not the value: not_measured (the quantity is no longer "
            "measured: channel dark, OSNR unresolved, power mode) or threshold_off.",
            [
                target(
                    "A",
                    'SELECT "kind", "channel", "active", "value", "threshold", "reason" '
                    'FROM "alarm" '
                    f"WHERE {DEVICE} AND ({CHANNELS} OR \"channel\" = 'all') AND $timeFilter "
                    "ORDER BY time DESC LIMIT 200",
                    result_format="table",
                )
            ],
            field_config("none", [("text", None)], decimals=2, custom={"align": "auto"}),
            {"showHeader": True, "cellHeight": "sm", "footer": {"show": False}},
            w=12,
            h=8,
        ),
    ]
    return dashboard(
        DETAIL_UID,
        "ODPM channel detail",
        "One channel of one monitor over time: power, OSNR and offset with 1-minute min/max "
        "bands for long ranges.",
        panels,
        [device_variable(), channel_variable(multi=False)],
    )


def render() -> dict[str, str]:
    """File name -> JSON text, exactly as committed."""
    return {
        "odpm-overview.json": json.dumps(overview(), indent=2) + "\n",
        "odpm-channel-detail.json": json.dumps(channel_detail(), indent=2) + "\n",
    }


def main() -> int:
    DASHBOARD_DIR.mkdir(parents=True, exist_ok=True)
    for name, text in render().items():
        (DASHBOARD_DIR / name).write_text(text)
        print(f"wrote {DASHBOARD_DIR / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
