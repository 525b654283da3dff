"""Expand a dashboard's raw InfluxQL the way Grafana does before it reaches InfluxDB.

The dashboard tests run every panel query against a real ``influxd``; for that the query must
be the string Grafana would send, not an approximation.  Grafana does it in two steps:

1. The frontend interpolates dashboard variables (``$device``, ``${device}``, ``[[device]]``,
   ``${device:fmt}``).  For InfluxQL raw queries the InfluxDB data source calls
   ``templateSrv.replace(query, vars, 'regex')`` (``public/app/plugins/datasource/influxdb/
   datasource.ts``, ``applyVariables``): each value is regex-escaped, several values become
   ``(a|b|c)``, and "All" becomes the variable's custom ``allValue`` verbatim or, without one,
   every option joined the same way.  ``$__interval`` and ``$__interval_ms`` are explicitly
   left for the backend.
2. The backend (``pkg/tsdb/influxdb/models/query.go``, ``Query.Build``) replaces
   ``$timeFilter`` with ``time >= <from>ms and time <= <to>ms``, then ``$interval`` and
   ``$__interval`` with the interval formatted by ``gtime.FormatInterval`` and
   ``$__interval_ms`` with milliseconds.  Nothing else: ``$__timeFilter`` is *not* an InfluxQL
   macro in Grafana, so :func:`unexpanded` reports it like any other leftover.

The older browser-side path (``classicQuery``) renders relative ranges as
``time >= now() - 1h and time <= now()``; :func:`expand` offers it as ``relative=True``.
The interval is what ``rangeutil.calculateInterval`` computes: the range divided by the
panel's max data points, rounded by ``roundInterval``'s table, never below the data
source's ``timeInterval``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

#: ``roundInterval`` (packages/grafana-data/src/datetime/rangeutil.ts): (upper bound, result) in ms.
_ROUND_INTERVAL_MS: tuple[tuple[float, int], ...] = (
    (15, 10),
    (35, 20),
    (75, 50),
    (150, 100),
    (350, 200),
    (750, 500),
    (1_500, 1_000),
    (3_500, 2_000),
    (7_500, 5_000),
    (12_500, 10_000),
    (17_500, 15_000),
    (25_000, 20_000),
    (45_000, 30_000),
    (90_000, 60_000),
    (210_000, 120_000),
    (450_000, 300_000),
    (750_000, 600_000),
    (1_050_000, 900_000),
    (1_500_000, 1_200_000),
    (2_700_000, 1_800_000),
    (5_400_000, 3_600_000),
    (9_000_000, 7_200_000),
    (16_200_000, 10_800_000),
    (32_400_000, 21_600_000),
    (86_400_000, 43_200_000),
    (604_800_000, 86_400_000),
    (1_814_400_000, 604_800_000),
    (3_628_800_000, 2_592_000_000),
)
_ONE_YEAR_MS = 31_536_000_000

_DURATION = re.compile(r"^(\d+)(ms|s|m|h|d|w)$")
_DURATION_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}

#: Grafana's variable syntax (templateSrv ``variableRegex``): $name, [[name(:fmt)]], ${name(:fmt)}.
_VARIABLE = re.compile(r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?::([^}]+))?\}")
_REGEX_SPECIAL = re.compile(r"[\\^$*+?.()|\[\]{}/]")
ALL = "$__all"


def round_interval_ms(interval_ms: float) -> int:
    for bound, result in _ROUND_INTERVAL_MS:
        if interval_ms < bound:
            return result
    return _ONE_YEAR_MS


def duration_ms(text: str) -> int:
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"not a Grafana interval: {text!r} (expected e.g. 1s, 500ms, 5m)")
    return int(match.group(1)) * _DURATION_MS[match.group(2)]


def calculate_interval_ms(range_ms: int, max_data_points: int, min_interval: str = "") -> int:
    """``$__interval_ms`` for a panel ``max_data_points`` wide showing ``range_ms``."""
    if max_data_points <= 0:
        raise ValueError(f"max_data_points must be positive, got {max_data_points}")
    interval = round_interval_ms(range_ms / max_data_points)
    low_limit = duration_ms(min_interval) if min_interval else 1
    return max(interval, low_limit)


def format_interval(interval_ms: int) -> str:
    """``gtime.FormatInterval``: the largest whole unit, as InfluxQL reads durations."""
    for unit_ms, suffix in ((86_400_000, "d"), (3_600_000, "h"), (60_000, "m"), (1_000, "s")):
        if interval_ms >= unit_ms:
            return f"{interval_ms // unit_ms}{suffix}"
    return f"{max(interval_ms, 1)}ms"


def regex_escape(value: str) -> str:
    """``kbn.regexEscape``: backslash every regex metacharacter, and ``/`` for InfluxQL."""
    return _REGEX_SPECIAL.sub(lambda m: "\\" + m.group(0), value)


@dataclass(frozen=True)
class Variable:
    """A dashboard variable as Grafana holds it at query time.

    ``selected`` is the current selection (``(ALL,)`` for "All"); ``options`` are the values
    its query returned, needed when "All" has no custom ``allValue``.
    """

    name: str
    selected: tuple[str, ...]
    options: tuple[str, ...] = ()
    multi: bool = False
    include_all: bool = False
    all_value: str | None = None

    def __post_init__(self) -> None:
        if not self.selected:
            raise ValueError(f"variable {self.name!r} has no selected value")
        if len(self.selected) > 1 and not self.multi:
            raise ValueError(f"variable {self.name!r} is single-value but {self.selected} given")
        if ALL in self.selected and not self.include_all:
            raise ValueError(f"variable {self.name!r} has no 'All' option")

    def render(self, fmt: str) -> str:
        if ALL in self.selected:
            if self.all_value is not None:
                return self.all_value  # custom all values are never formatted
            values: Sequence[str] = self.options
        else:
            values = self.selected
        return _format(values, fmt, self.name)


def _format(values: Sequence[str], fmt: str, name: str) -> str:
    if fmt == "regex":
        escaped = [regex_escape(v) for v in values]
        return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"
    if fmt == "raw":
        return ",".join(values)
    if fmt == "pipe":
        return "|".join(values)
    if fmt == "csv":
        return ",".join(values)
    raise ValueError(f"variable {name!r}: format {fmt!r} is not supported here")


@dataclass(frozen=True)
class TimeRange:
    """A dashboard time range; ``raw_from``/``raw_to`` as the picker has them (``now-1h``)."""

    from_ms: int
    to_ms: int
    raw_from: str = ""
    raw_to: str = ""

    def __post_init__(self) -> None:
        if self.to_ms <= self.from_ms:
            raise ValueError(f"time range ends ({self.to_ms}) before it starts ({self.from_ms})")

    @property
    def span_ms(self) -> int:
        return self.to_ms - self.from_ms


def _relative(raw: str, fallback_ms: int) -> str:
    if raw == "now":
        return "now()"
    match = re.fullmatch(r"now-(\d+)([dhms])", raw)
    if match:
        return f"now() - {match.group(1)}{match.group(2)}"
    return f"{fallback_ms}ms"


def interpolate_variables(query: str, variables: Mapping[str, Variable]) -> str:
    """Step 1, the frontend: dashboard variables in regex format; unknown names stay as typed."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(4)
        fmt = match.group(3) or match.group(5) or "regex"
        variable = variables.get(name)
        if variable is None:
            return match.group(0)
        return variable.render(fmt)

    return _VARIABLE.sub(replace, query)


def apply_backend_macros(
    query: str, time_range: TimeRange, interval_ms: int, *, relative: bool = False
) -> str:
    """Step 2, the backend (``Query.Build``), in its order of replacement."""
    if relative:
        time_filter = (
            f"time >= {_relative(time_range.raw_from, time_range.from_ms)} and "
            f"time <= {_relative(time_range.raw_to, time_range.to_ms)}"
        )
    else:
        time_filter = f"time >= {time_range.from_ms}ms and time <= {time_range.to_ms}ms"
    text = format_interval(interval_ms)
    query = query.replace("$timeFilter", time_filter)
    query = query.replace("$interval", text)
    query = query.replace("$__interval_ms", str(interval_ms))
    return query.replace("$__interval", text)


def expand(
    query: str,
    *,
    variables: Mapping[str, Variable],
    time_range: TimeRange,
    interval_ms: int,
    relative: bool = False,
) -> str:
    """The InfluxQL Grafana sends for a raw query."""
    return apply_backend_macros(
        interpolate_variables(query, variables), time_range, interval_ms, relative=relative
    )


def unexpanded(query: str) -> list[str]:
    """Variable-like tokens still in ``query`` (a typo, or a macro Grafana does not know)."""
    return [m.group(0) for m in _VARIABLE.finditer(query)]
