"""The Grafana macro expansion the dashboard query tests rely on.

If this expansion were wrong the dashboard tests would prove queries Grafana never sends, so
it is pinned here against Grafana's documented behaviour (its InfluxDB data source and
``rangeutil``): regex-escaped values, ``(a|b)`` for several, custom "All" verbatim, the
backend's absolute time filter and interval formatting.
"""

from __future__ import annotations

import pytest

from tests.support import grafana_macros as gm

RANGE = gm.TimeRange(1_700_000_000_000, 1_700_003_600_000, "now-1h", "now")


def _expand(query: str, **variables: gm.Variable) -> str:
    return gm.expand(query, variables=variables, time_range=RANGE, interval_ms=5_000)


def test_single_value_all_three_syntaxes_regex_escaped() -> None:
    dev = gm.Variable("device", ("rack.1/a",))
    q = _expand('"device" =~ /^$device$/ ${device} [[device]] ${device:raw}', device=dev)
    assert q == r'"device" =~ /^rack\.1\/a$/ rack\.1\/a rack\.1\/a rack.1/a'


def test_multi_value_becomes_an_alternation() -> None:
    ch = gm.Variable("channel", ("01", "02", "05"), multi=True, include_all=True)
    assert _expand('"channel" =~ /^$channel$/', channel=ch) == '"channel" =~ /^(01|02|05)$/'
    one = gm.Variable("channel", ("07",), multi=True)
    assert _expand("/^$channel$/", channel=one) == "/^07$/"


def test_all_uses_custom_all_value_verbatim_or_every_option() -> None:
    options = ("01", "02", "03")
    custom = gm.Variable(
        "channel", (gm.ALL,), options, multi=True, include_all=True, all_value=".*"
    )
    assert _expand("/^$channel$/", channel=custom) == "/^.*$/"
    plain = gm.Variable("channel", (gm.ALL,), options, multi=True, include_all=True)
    assert _expand("/^$channel$/", channel=plain) == "/^(01|02|03)$/"


def test_backend_time_filter_and_intervals() -> None:
    q = _expand("WHERE $timeFilter GROUP BY time($__interval) -- $interval $__interval_ms")
    assert q == (
        "WHERE time >= 1700000000000ms and time <= 1700003600000ms GROUP BY time(5s) -- 5s 5000"
    )


def test_browser_path_renders_relative_ranges() -> None:
    q = gm.expand("$timeFilter", variables={}, time_range=RANGE, interval_ms=1000, relative=True)
    assert q == "time >= now() - 1h and time <= now()"


def test_unknown_names_stay_and_are_reported() -> None:
    q = _expand("WHERE $__timeFilter AND $nosuch AND /^$device$/")
    assert gm.unexpanded(q) == ["$__timeFilter", "$nosuch", "$device"]


@pytest.mark.parametrize(
    ("range_ms", "points", "min_interval", "expected"),
    [
        (3_600_000, 1000, "", "5s"),  # 3.6 s rounds to 5 s
        (3_600_000, 1000, "10s", "10s"),  # never below the data source's timeInterval
        (300_000, 1000, "1s", "1s"),  # 300 ms would round to 200 ms; the floor wins
        (86_400_000, 1000, "1s", "1m"),  # 86.4 s
        (7 * 86_400_000, 600, "", "15m"),  # 1008 s
        (30 * 86_400_000, 1000, "", "30m"),  # 2592 s
    ],
)
def test_interval_follows_grafanas_rounding(
    range_ms: int, points: int, min_interval: str, expected: str
) -> None:
    ms = gm.calculate_interval_ms(range_ms, points, min_interval)
    assert gm.format_interval(ms) == expected
    assert gm.duration_ms(expected) == ms


def test_bad_input_is_named() -> None:
    with pytest.raises(ValueError, match="single-value"):
        gm.Variable("device", ("a", "b"))
    with pytest.raises(ValueError, match="no 'All'"):
        gm.Variable("device", (gm.ALL,))
    with pytest.raises(ValueError, match="not a Grafana interval"):
        gm.duration_ms("5 minutes")
    with pytest.raises(ValueError, match="before it starts"):
        gm.TimeRange(2, 1)
