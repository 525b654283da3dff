"""History queries: validation, and the same answers from the journal and from InfluxDB."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from odpm.config import InfluxConfig
from odpm.models import Reading
from odpm.storage import (
    ChannelHistory,
    Forwarder,
    HistoryQueryError,
    InfluxHistory,
    InvalidChannelError,
    InvalidRangeError,
    Journal,
    JournalHistory,
    ResolutionTooFineError,
    TooManyBucketsError,
)
from odpm.storage.history import RAW_RANGE_LIMIT_S, influxql_for, plan_query
from odpm.storage.journal import VALUE_DECIMALS, us_to_time
from tests.support.influxd import InfluxServer
from tests.support.storage_writer import make_reading

T0 = datetime(2024, 3, 1, 12, 0, 30, tzinfo=UTC)
N = 240  # one reading every 2 s for 8 minutes; the first 60 in power mode (no OSNR)


def readings() -> list[Reading]:
    return [
        make_reading("h", T0 + timedelta(seconds=2 * i), i, mode="power" if i < 60 else "trace")
        for i in range(N)
    ]


@pytest.mark.parametrize(
    ("start", "end", "every", "error", "parameter"),
    [
        (T0, T0, 10, InvalidRangeError, "end"),
        (T0, T0 - timedelta(seconds=1), 10, InvalidRangeError, "end"),
        (T0, T0 + timedelta(minutes=5), 0.5, ResolutionTooFineError, "every"),
        (T0, T0 + timedelta(minutes=5), 0, ResolutionTooFineError, "every"),
        (T0, T0 + timedelta(hours=4), 30, ResolutionTooFineError, "every"),
        (T0, T0 + timedelta(hours=4), 90, ResolutionTooFineError, "every"),
        (T0, T0 + timedelta(hours=3), 1, TooManyBucketsError, "every"),
    ],
)
def test_bad_queries_name_the_parameter(
    start: datetime,
    end: datetime,
    every: float,
    error: type[HistoryQueryError],
    parameter: str,
) -> None:
    with pytest.raises(error) as info:
        plan_query("h", start, end, every)
    assert isinstance(info.value, ValueError) and isinstance(info.value, HistoryQueryError)
    assert info.value.parameter == parameter and str(info.value).startswith(parameter + ":")


def test_source_switches_at_the_named_threshold() -> None:
    limit = timedelta(seconds=RAW_RANGE_LIMIT_S)
    assert plan_query("h", T0, T0 + limit, 60).source == "raw"
    assert plan_query("h", T0, T0 + limit + timedelta(minutes=1), 60).source == "channel_1m"
    text = influxql_for(plan_query("h", T0, T0 + timedelta(minutes=5), 60), 7)
    assert "\"channel\" = '07'" in text and "GROUP BY time(60000000u, 0u)" in text


def test_journal_raw_buckets_match_numpy(tmp_path: Path) -> None:
    rs = readings()
    with Journal(tmp_path / "j.sqlite3") as j:
        for r in rs:
            j.append(r)
        # T0 is 12:00:30: 30 s buckets, aligned to their width, start there.
        h = JournalHistory(j).channel_history("h", 12, T0, T0 + timedelta(minutes=8), 30)
        with pytest.raises(InvalidChannelError):
            JournalHistory(j).channel_history("h", 0, T0, T0 + timedelta(minutes=8), 60)
        assert len(JournalHistory(j).channel_history("x", 1, T0, T0 + timedelta(hours=1), 60)) == 0
    assert h.source == "raw" and len(h) == 16 and h.samples.tolist() == [15] * 16
    power = np.round(np.array([r.power_dbm[11] for r in rs]), VALUE_DECIMALS).reshape(16, 15)
    np.testing.assert_allclose(h.power_dbm.mean, power.mean(axis=1), rtol=1e-12)
    np.testing.assert_array_equal(h.power_dbm.min, power.min(axis=1))
    np.testing.assert_array_equal(h.power_dbm.max, power.max(axis=1))
    # First two minutes in power mode: no OSNR there at all.
    assert np.isnan(h.osnr_db.mean[:4]).all() and np.isfinite(h.osnr_db.mean[4:]).all()
    assert h.to_dict()["osnr_db_mean"][0] is None


def test_raw_buckets_align_to_their_width_not_to_start(tmp_path: Path) -> None:
    """Issue 11: buckets followed the request's start time (10:00:17, 10:01:17 ...)."""
    rs = readings()
    with Journal(tmp_path / "j.sqlite3") as j:
        for r in rs:
            j.append(r)
        start = T0 + timedelta(seconds=17)
        h = JournalHistory(j).channel_history("h", 12, start, start + timedelta(minutes=5), 60)
    assert len(h) > 0 and (h.time_us % 60_000_000 == 0).all()
    first = [r for r in rs if start <= r.time < us_to_time(int(h.time_us[0]) + 60_000_000)]
    assert h.samples[0] == len(first)  # the first bucket holds only data from start on


@pytest.fixture
def both_stores(
    influxd: InfluxServer, influx_db: str, tmp_path: Path
) -> Iterator[tuple[JournalHistory, InfluxHistory]]:
    cfg = InfluxConfig(url=influxd.url, database=influx_db)
    with Journal(tmp_path / "j.sqlite3") as j:
        for r in readings():
            j.append(r)
        j.run_maintenance(close_open_minutes=True)
        with Forwarder(j, cfg, poll_interval_s=0.02) as fwd:
            assert fwd.wait_drained(30)
        influx = InfluxHistory(cfg)
        try:
            yield JournalHistory(j), influx
        finally:
            influx.close()


def assert_same(a: ChannelHistory, b: ChannelHistory) -> None:
    assert (a.device, a.channel, a.source, a.every_s) == (b.device, b.channel, b.source, b.every_s)
    np.testing.assert_array_equal(a.time_us, b.time_us)
    np.testing.assert_array_equal(a.samples, b.samples)
    for q in ("power_dbm", "osnr_db"):
        for stat in ("mean", "min", "max"):
            np.testing.assert_allclose(
                getattr(getattr(a, q), stat),
                getattr(getattr(b, q), stat),
                rtol=1e-12,
                err_msg=f"{q} {stat}",
            )


@pytest.mark.influx
@pytest.mark.parametrize(
    ("start_offset", "span", "every"),
    [
        (timedelta(0), timedelta(minutes=8), 60),  # raw, buckets aligned to start
        (timedelta(seconds=7), timedelta(minutes=5), 17),  # raw, odd alignment
        (-timedelta(hours=4), timedelta(hours=4, minutes=9), 120),  # channel_1m
    ],
)
def test_journal_and_influx_agree(
    both_stores: tuple[JournalHistory, InfluxHistory],
    start_offset: timedelta,
    span: timedelta,
    every: float,
) -> None:
    journal, influx = both_stores
    start = T0 + start_offset
    for ch in (1, 7, 33, 80):  # 7 and 33 are dark
        a = journal.channel_history("h", ch, start, start + span, every)
        b = influx.channel_history("h", ch, start, start + span, every)
        assert len(a) > 0
        assert_same(a, b)
    whole_a = journal.device_history("h", start, start + span, every)
    whole_b = influx.device_history("h", start, start + span, every)
    assert [h.channel for h in whole_a] == [h.channel for h in whole_b] == list(range(1, 81))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for a, b in zip(whole_a, whole_b, strict=True):
            assert_same(a, b)
