"""The journal keeps each channel's OSNR method and uncertainty (issue 15), and a journal
file written before those columns existed is migrated in place without losing a row."""

from __future__ import annotations

import dataclasses
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from odpm.config import InfluxConfig
from odpm.models import OsnrMethod, Reading
from odpm.storage import Forwarder, Journal
from odpm.storage.journal import VALUE_DECIMALS, time_to_us
from odpm.storage.lineprotocol import (
    CHANNEL_FLOAT_FIELDS,
    CHANNEL_LINE_FIELDS,
    MEASUREMENT_CHANNEL,
    ChannelBlock,
    ChannelLineEncoder,
)
from tests.support.influxd import InfluxServer
from tests.support.storage_writer import make_reading

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def _with_provenance(r: Reading, seed: int) -> Reading:
    rng = np.random.default_rng(seed)
    n = r.channel.size
    method = rng.choice(
        [OsnrMethod.INTERPOLATION, OsnrMethod.FIT, OsnrMethod.SIGNAL_OFF], size=n
    ).astype(np.uint8)
    method[~r.present] = OsnrMethod.NONE
    unc = np.where(r.present, rng.uniform(0.01, 0.4, n), np.nan)
    return dataclasses.replace(r, osnr_method=method, osnr_uncertainty_db=unc)


def _check(got: Reading | None, want: Reading) -> None:
    assert got is not None and want.osnr_method is not None
    assert got.osnr_method is not None and got.osnr_uncertainty_db is not None
    np.testing.assert_array_equal(got.osnr_method, want.osnr_method)
    assert want.osnr_uncertainty_db is not None
    np.testing.assert_array_equal(
        got.osnr_uncertainty_db, np.round(want.osnr_uncertainty_db, VALUE_DECIMALS)
    )


def test_method_and_uncertainty_round_trip(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite3", retention_days=7, max_bytes=10**9)
    try:
        r = _with_provenance(make_reading("a", T0, 1), 1)
        ports = make_reading("b", T0, 2, mode="power")  # no OSNR, no provenance
        j.append(r)
        j.append(ports)
        _check(j.latest("a"), r)
        (stored,) = j.scans_between("a", 0, 2**62)
        _check(stored.to_reading(), r)
        got_ports = j.latest("b")
        assert got_ports is not None
        assert got_ports.osnr_method is None and got_ports.osnr_uncertainty_db is None
        bad = dataclasses.replace(r, osnr_uncertainty_db=np.zeros(3))
        with pytest.raises(ValueError, match="osnr_uncertainty_db has 3 values"):
            j.append(bad)
    finally:
        j.close()


def test_an_older_journal_gains_the_columns_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    old = make_reading("a", T0, 3)
    j = Journal(path, retention_days=7, max_bytes=10**9)
    j.append(old)
    j.close()
    # Make it a journal of the previous schema: the scans table without the columns.
    with sqlite3.connect(path) as conn:
        conn.execute("ALTER TABLE scans DROP COLUMN osnr_method")
        conn.execute("ALTER TABLE scans DROP COLUMN osnr_uncertainty_db")
    conn.close()
    j = Journal(path, retention_days=7, max_bytes=10**9)
    try:
        got_old = j.latest("a")
        assert got_old is not None and got_old.osnr_method is None
        np.testing.assert_array_equal(got_old.present, old.present)
        new = _with_provenance(make_reading("a", T0 + timedelta(seconds=1), 4), 4)
        j.append(new)
        _check(j.latest("a"), new)
        assert j.scan_count("a") == 2
    finally:
        j.close()
    with sqlite3.connect(path) as conn:
        cols = [r[1] for r in conn.execute("PRAGMA table_info(scans)")]
    conn.close()
    assert cols.count("osnr_method") == 1 and cols.count("osnr_uncertainty_db") == 1


@pytest.mark.influx
def test_method_and_uncertainty_reach_influxdb(
    influxd: InfluxServer, influx_db: str, tmp_path: Path
) -> None:
    r = _with_provenance(make_reading("pv", T0, 5), 5)
    ports = make_reading("pv", T0 + timedelta(seconds=1), 6, mode="power")
    j = Journal(tmp_path / "j.sqlite3")
    try:
        j.append(r)
        j.append(ports)
        cfg = InfluxConfig(url=influxd.url, database=influx_db, batch_lines=500)
        with Forwarder(
            j, cfg, backoff_initial_s=0.05, backoff_max_s=0.3, poll_interval_s=0.02
        ) as f:
            assert f.wait_drained(30)
    finally:
        j.close()
    series = influxd.query(
        'SELECT osnr_method, osnr_uncertainty_db, present FROM "channel" '
        'WHERE "device"=\'pv\' GROUP BY "channel"',
        db=influx_db,
    )["results"][0]["series"]
    t_scan = time_to_us(T0)  # the fixture reads times back in microseconds
    assert r.osnr_method is not None and r.osnr_uncertainty_db is not None
    seen = 0
    for s in series:
        i = int(s["tags"]["channel"]) - 1
        for time_, method, unc, present in s["values"]:
            if time_ != t_scan:  # the port scan: no OSNR, so neither field
                assert method is None and unc is None
                continue
            seen += 1
            label = OsnrMethod(int(r.osnr_method[i])).label
            assert method == label
            want = r.osnr_uncertainty_db[i]
            if np.isnan(want):
                assert unc is None
            else:
                assert unc == pytest.approx(round(float(want), VALUE_DECIMALS), abs=1e-9)
            assert present == bool(r.present[i])
    assert seen == r.channel.size


def test_channel_lines_without_provenance_are_unchanged() -> None:
    # Scans without an OSNR method (port scans, rows journalled before issue 15) render
    # exactly the lines they did before; with one, both fields are written.
    enc = ChannelLineEncoder()
    ch = np.arange(1, 6)
    values = np.round(np.random.default_rng(0).uniform(-30, 30, (4, 5)), VALUE_DECIMALS)
    present = np.array([True, True, False, True, True])
    before = enc.render(
        MEASUREMENT_CHANNEL,
        CHANNEL_FLOAT_FIELDS,
        [ChannelBlock("d", 7, ch, values, enc.present_suffix(present))],
    )
    no_unc = np.concatenate((values, np.full((1, 5), np.nan)))
    after = enc.render(
        MEASUREMENT_CHANNEL,
        CHANNEL_LINE_FIELDS,
        [ChannelBlock("d", 7, ch, no_unc, enc.channel_suffix(present, None))],
    )
    assert after == before
    method = np.array([1, 3, 0, 5, 4], dtype=np.uint8)
    unc = no_unc.copy()
    unc[4] = [0.03, 0.25, np.nan, 0.1, 0.2]
    lines = enc.render(
        MEASUREMENT_CHANNEL,
        CHANNEL_LINE_FIELDS,
        [ChannelBlock("d", 7, ch, unc, enc.channel_suffix(present, method))],
    ).splitlines()
    assert 'osnr_uncertainty_db=0.2500,osnr_method="fit",present=true 7' in lines[1]
    assert "osnr_method" not in lines[2] and "osnr_uncertainty_db" not in lines[2]
    assert 'osnr_method="signal_off"' in lines[3]
