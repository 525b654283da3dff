"""Flexible grid (ITU-T G.694.1): plans of per-channel centre and width, from code,
config and plan files, through the trace and port pipelines."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from odpm.config import AlarmConfig, CalibrationConfig, ConfigError, PipelineConfig, load_settings
from odpm.grid import ChannelPlan, PortGrid
from odpm.models import PortScan, Quality, Reading, TraceScan
from odpm.openconfig import channel_monitor
from odpm.pipeline import Pipeline, TraceAxis
from odpm.pipeline.axis import _midpoints_ghz
from odpm.planfile import PlanFileError, read_plan_csv, write_plan_csv
from odpm.storage import Journal
from tests.support.synthetic_traces import make_trace, random_scenario

NOW = datetime(2026, 1, 1, tzinfo=UTC)
QUIET = AlarmConfig(
    power_low_dbm=None,
    power_high_dbm=None,
    osnr_low_db=None,
    offset_high_ghz=None,
    total_power_low_dbm=None,
    total_power_high_dbm=None,
)


def mixed_plan(gap_after: int = 5) -> ChannelPlan:
    """50 GHz 10G, 75 GHz 400G and 150 GHz 800G slots side by side from 192.05 THz,
    contiguous except for one 12.5 GHz gap after channel ``gap_after``, up to ~196 THz."""
    pattern = [4, 4, 6, 12, 6, 4, 6, 6, 12, 4]  # m: 50, 50, 75, 150, 75, 50, ...
    edge = round((192.05 - 193.1) * 1000 / 6.25)  # the lower edge, in 6.25 GHz steps
    slots: list[tuple[int, int]] = []
    while True:
        m = pattern[len(slots) % len(pattern)]
        if (edge + 2 * m) * 6.25 / 1000 + 193.1 > 196.05:
            break
        slots.append((edge + m, m))
        edge += 2 * m + (2 if len(slots) == gap_after else 0)
    return ChannelPlan.flex(slots)


# ------------------------------------------------------------------- the plan


def test_flex_plan_from_n_m_pairs() -> None:
    plan = ChannelPlan.flex([(-276, 4), (-266, 6), (-248, 12)])
    np.testing.assert_array_equal(plan.frequencies_thz, [191.375, 191.4375, 191.55])
    np.testing.assert_array_equal(plan.widths_ghz, [50.0, 75.0, 150.0])
    lower, upper = plan.edges_mhz
    np.testing.assert_array_equal(lower, [191_350_000, 191_400_000, 191_475_000])
    np.testing.assert_array_equal(upper, [191_400_000, 191_475_000, 191_625_000])
    assert plan.count == 3 and plan.is_flex
    same = ChannelPlan.from_slots([191.375, 191.4375, 191.55], [50, 75, 150])
    assert same == plan


def test_uniform_plans_keep_their_form_with_per_channel_widths() -> None:
    plan = ChannelPlan.c_band_50ghz()
    assert not plan.is_flex and plan.spacing_ghz == 50.0
    np.testing.assert_array_equal(plan.widths_ghz, np.full(80, 50.0))
    custom = ChannelPlan.custom([192.1, 192.3], 100.0)
    np.testing.assert_array_equal(custom.widths_ghz, [100.0, 100.0])
    lower, upper = plan.edges_mhz
    assert lower[0] == 192_075_000 and upper[-1] == 196_075_000


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda: ChannelPlan.flex([(-276, 4), (-273, 6)]),
            "channel 2 (191.39375 THz, 75 GHz) overlaps channel 1",
        ),
        (
            lambda: ChannelPlan.flex([(-266, 4), (-276, 4)]),
            "channel 2 at 191.37500 THz is not above channel 1",
        ),
        (lambda: ChannelPlan.flex([(0, 4), (8, 0)]), "channel 2: m must be at least 1"),
        (lambda: ChannelPlan.flex([]), "at least one channel"),
        (
            lambda: ChannelPlan.from_slots([193.1, 193.103], [50, 50]),
            "channel 2: centre 193.103000 THz is not on the 6.25 GHz flex grid",
        ),
        (
            lambda: ChannelPlan.from_slots([193.1, 193.2], [50, 40]),
            "channel 2: width 40 GHz is not a positive multiple of 12.5 GHz",
        ),
        (lambda: ChannelPlan.from_slots([193.1], [50, 50]), "1 channel centres but 2 widths"),
    ],
)
def test_bad_flex_plans_name_the_channel(build: object, message: str) -> None:
    with pytest.raises(ValueError) as exc:
        build()  # type: ignore[operator]
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_decimal_centres_on_the_flex_grid_are_accepted() -> None:
    # 193.10625 is not exact in binary; it is on the grid (n = 1).
    plan = ChannelPlan.from_slots([193.10625, 193.2], [12.5, 75])
    np.testing.assert_array_equal(plan.frequencies_thz, [193.10625, 193.2])


# ----------------------------------------------------------- config and files


def _config(tmp_path: Path, channels: str) -> Path:
    path = tmp_path / "odpm.toml"
    path.write_text(
        '[[devices]]\nid = "a"\naddress = "socket://127.0.0.1:1"\n' + channels,
    )
    return path


def test_config_flex_channels(tmp_path: Path) -> None:
    path = _config(
        tmp_path,
        "[[devices.plan.channels]]\nn = -276\nm = 4\n"
        "[[devices.plan.channels]]\ncentre_thz = 191.4375\nwidth_ghz = 75\n"
        "[[devices.plan.channels]]\nn = -248\nm = 12\n",
    )
    plan = load_settings(path).devices[0].plan.to_plan()
    assert plan == ChannelPlan.flex([(-276, 4), (-266, 6), (-248, 12)])


@pytest.mark.parametrize(
    ("channels", "message"),
    [
        (
            "[[devices.plan.channels]]\nn = -276\n",
            "devices[0].plan.channels[0]: needs both n and m",
        ),
        (
            "[[devices.plan.channels]]\nn = -276\nm = 4\ncentre_thz = 193.1\n",
            "devices[0].plan.channels[0]: give either n and m or centre_thz and width_ghz",
        ),
        (
            "[[devices.plan.channels]]\nn = -276\nm = 4\n"
            "[[devices.plan.channels]]\ncentre_thz = 191.41\nwidth_ghz = 75\n",
            "channel 2: centre 191.410000 THz is not on the 6.25 GHz flex grid",
        ),
        (
            "[[devices.plan.channels]]\nn = -276\nm = 4\n"
            "[[devices.plan.channels]]\nn = -272\nm = 4\n",
            "channel 2 (191.40000 THz, 50 GHz) overlaps channel 1",
        ),
        ("[[devices.plan.channels]]\nn = -276\nm = 0\n", "devices[0].plan.channels[0].m"),
    ],
)
def test_config_flex_errors_name_the_entry(tmp_path: Path, channels: str, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(_config(tmp_path, channels))
    text = str(exc.value)
    assert message in text and "\n" not in text
    assert "valid integer" not in text  # the count form of `channels` is not blamed


def test_a_plan_finer_than_the_monitor_ports_is_analysed_in_trace_mode(tmp_path: Path) -> None:
    """A flex plan may have more channels than the ODPM-96 has ports (384 x 12.5 GHz
    over the C band): the config takes it, a trace is analysed on it; only the port
    mode, which has one photodiode per 50 GHz, cannot serve it (a one-line error)."""
    entries = "".join(
        f"[[devices.plan.channels]]\nn = {n}\nm = 1\n" for n in range(-160, -160 + 2 * 384, 2)
    )
    plan = load_settings(_config(tmp_path, entries)).devices[0].plan.to_plan()
    assert plan.count == 384 and np.all(plan.widths_ghz == 12.5)
    osnr, lit, offset = random_scenario(plan.frequencies_thz, seed=3)
    t = make_trace(
        grid_thz=plan.frequencies_thz, spacing_ghz=12.5, osnr_db=osnr, lit=lit,
        offset_ghz=offset * 0.2, rbw_ghz=1.25, step_nm=0.002, symbol_rate_gbd=2.5,
        start_thz=192.0, stop_thz=197.0, ripple_period_ghz=1600.0,
    )  # fmt: skip
    pipeline = Pipeline(plan, PipelineConfig(), AlarmConfig(), CalibrationConfig())
    r = pipeline.process(TraceScan("d", datetime.now(UTC), t.frequency_thz, t.power_dbm, t.rbw_ghz))
    assert r.channel.size == 384 and np.array_equal(r.present, t.truth.present)
    with pytest.raises(ValueError, match="covers no device port"):
        pipeline.process(
            PortScan("d", datetime.now(UTC), np.full(96, -20.0), PortGrid().frequencies_thz)
        )
    too_many = "".join(
        f"[[devices.plan.channels]]\nn = {n}\nm = 1\n" for n in range(-900, -900 + 2 * 801, 2)
    )
    with pytest.raises(ConfigError, match="at most 800"):
        load_settings(_config(tmp_path, too_many))


def test_config_count_form_unchanged(tmp_path: Path) -> None:
    path = _config(tmp_path, "[devices.plan]\nchannels = 40\nspacing_ghz = 100\n")
    plan = load_settings(path).devices[0].plan.to_plan()
    assert plan == ChannelPlan.c_band_100ghz()


def test_plan_csv_round_trip(tmp_path: Path) -> None:
    plan = mixed_plan()
    path = tmp_path / "plan.csv"
    path.write_text(write_plan_csv(plan))
    assert read_plan_csv(path) == plan


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("channel,centre_thz\n1,191.375\n", "line 1: the header lacks column 'width_ghz'"),
        ("1,191.375,50\n", "line 1: the header lacks column 'channel'"),
        (
            "channel,centre_thz,width_ghz\n1,191.375,abc\n",
            "line 2: width_ghz 'abc' is not a number",
        ),
        (
            "channel,centre_thz,width_ghz\n1,191.375,50\n2,191.40,75\n",
            "line 3: channel 2 (191.40000 THz, 75 GHz) overlaps",
        ),
        (
            "channel,centre_thz,width_ghz\n1,191.375,50\n2,191.30,50\n",
            "line 3: channel 2 at 191.30000 THz is not above",
        ),
        (
            "channel,centre_thz,width_ghz\n1,191.375,50\n2,191.4376,75\n",
            "line 3: channel 2: centre 191.437600 THz is not on",
        ),
        (
            "channel,centre_thz,width_ghz\n1,191.375,50\n3,191.4375,75\n",
            "line 3: channel 3 where channel 2 was expected",
        ),
        ("channel,centre_thz,width_ghz\n", "no channels after the header"),
        ("", "empty plan file"),
    ],
)
def test_plan_csv_errors_are_one_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "plan.csv"
    path.write_text(text)
    with pytest.raises(PlanFileError) as exc:
        read_plan_csv(path)
    assert message in str(exc.value) and "\n" not in str(exc.value)
    assert str(exc.value).startswith(str(path))


# --------------------------------------------------------------- the pipeline


def test_axis_on_a_mixed_plan() -> None:
    plan = mixed_plan(gap_after=5)
    widths = plan.widths_ghz
    assert {50.0, 75.0, 150.0} <= set(widths.tolist())
    f = np.linspace(191.95, 196.2, 20_000)
    axis = TraceAxis.build(f, plan, PipelineConfig())
    np.testing.assert_array_equal(axis.slot_width_ghz, widths)
    centres = plan.frequencies_thz * 1000.0
    # The slots are each channel's own width.
    np.testing.assert_allclose(axis.range_width_ghz[: plan.count], widths)
    mids = _midpoints_ghz(plan)
    upper, lower = centres + widths / 2, centres - widths / 2
    contiguous = np.arange(plan.count - 1) != 4  # the gap is after channel 5
    np.testing.assert_allclose(mids[1:-1][contiguous], upper[:-1][contiguous], atol=1e-6)
    np.testing.assert_allclose(mids[5], (upper[4] + lower[5]) / 2, atol=1e-6)
    assert upper[4] + 12.5 == pytest.approx(lower[5])
    assert mids[0] == pytest.approx(lower[0]) and mids[-1] == pytest.approx(upper[-1])
    # Each centre lies between its two noise points (the interpolation is inside).
    assert np.all((axis.centre_t > 0) & (axis.centre_t < 1))
    assert mids.size == plan.count + 1


def _pipeline(plan: ChannelPlan) -> Pipeline:
    return Pipeline(plan, PipelineConfig(), QUIET, CalibrationConfig())


@pytest.mark.parametrize("seed", [1, 2])
def test_interpolation_accuracy_on_a_mixed_plan_of_narrow_channels(seed: int) -> None:
    """10 GBd channels in 50, 75 and 150 GHz slots: as accurate as on the fixed grid.

    The ripple period is longer than the fixed-grid tests' 400 GHz: the midpoints
    around a 150 GHz slot are 150 GHz apart, and a 400 GHz ripple bends the ASE
    between them by ~0.15 dB (the limit of linear interpolation the generator's
    docstring quantifies), which would measure the test's ASE, not the slots."""
    plan = mixed_plan()
    osnr, lit, offset = random_scenario(plan.frequencies_thz, seed)
    tr = make_trace(
        grid_thz=plan.frequencies_thz,
        spacing_ghz=plan.widths_ghz,
        osnr_db=osnr,
        lit=lit,
        offset_ghz=offset,
        ripple_period_ghz=1600.0,
    )
    truth = tr.truth
    r = _pipeline(plan).process(
        TraceScan("dev", NOW, tr.frequency_thz, tr.power_dbm.astype(np.float32), tr.rbw_ghz)
    )
    np.testing.assert_array_equal(r.present, truth.present)
    m = truth.present
    assert np.abs(r.osnr_db[m] - truth.osnr_db[m]).max() <= 0.05
    assert np.abs(r.power_dbm - truth.slot_power_dbm).max() <= 0.05
    assert np.abs(r.signal_power_dbm[m] - truth.signal_power_dbm[m]).max() <= 0.05
    assert np.abs(r.offset_ghz[m] - truth.offset_ghz[m]).max() <= 0.5
    assert (r.quality[m] == Quality.OK).all() and (r.quality[~m] == Quality.DARK).all()


def test_slot_power_follows_the_channel_width() -> None:
    """On a flat ASE floor, the dark slots' powers scale with their widths (the slot
    of each channel is its own centre +/- width/2, not one spacing for all)."""
    plan = mixed_plan()
    tr = make_trace(
        grid_thz=plan.frequencies_thz,
        spacing_ghz=plan.widths_ghz,
        osnr_db=np.full(plan.count, 20.0),
        lit=np.zeros(plan.count, bool),
        offset_ghz=np.zeros(plan.count),
        ase_tilt_db_over_band=0.0,
        ripple_db_pp=0.0,
    )
    r = _pipeline(plan).process(TraceScan("dev", NOW, tr.frequency_thz, tr.power_dbm, tr.rbw_ghz))
    per_ghz_db = r.power_dbm - 10 * np.log10(plan.widths_ghz)
    assert np.ptp(per_ghz_db) <= 0.01


# ----------------------------------------------------------------- port mode


def test_port_mode_sums_the_ports_a_flex_slot_covers() -> None:
    plan = ChannelPlan.flex([(-276, 4), (-266, 6), (-248, 12), (-232, 4)])
    ports = PortGrid()
    pf = ports.frequencies_thz
    power = np.full(pf.size, -30.0)
    rng = np.random.default_rng(4)
    power[:12] = rng.uniform(-20, -5, 12)
    power[4] = np.nan  # below the floor (in the 150 GHz slot): adds nothing
    r = _pipeline(plan).process(PortScan("dev", NOW, power, pf))
    lin = np.where(np.isnan(power), 0.0, 10 ** (power / 10))

    def covered(lo_thz: float, hi_thz: float) -> np.ndarray:
        return (pf >= lo_thz - 1e-9) & (pf < hi_thz - 1e-9)

    lower, upper = plan.edges_mhz
    expect = [
        10 * np.log10(lin[covered(lo / 1e6, hi / 1e6)].sum())
        for lo, hi in zip(lower, upper, strict=True)
    ]
    np.testing.assert_allclose(r.power_dbm, expect, rtol=0, atol=1e-9)
    # 50 GHz: one port; 75 GHz: two; 150 GHz: three.
    assert [
        int(covered(lo / 1e6, hi / 1e6).sum()) for lo, hi in zip(lower, upper, strict=True)
    ] == [1, 2, 3, 1]
    assert r.lit_channels == 4


def test_port_mode_flex_channel_with_every_port_below_floor_is_dark() -> None:
    plan = ChannelPlan.flex([(-276, 4), (-266, 6)])
    pf = PortGrid().frequencies_thz
    power = np.full(pf.size, np.nan)
    power[1] = -10.0
    r = _pipeline(plan).process(PortScan("dev", NOW, power, pf))
    assert r.power_dbm[0] == pytest.approx(-10.0) and np.isnan(r.power_dbm[1])
    assert r.present.tolist() == [True, False]


def test_port_mode_flex_plan_off_the_device_is_an_error() -> None:
    plan = ChannelPlan.flex([(500, 4)])  # 196.225 THz: above the last port, 196.05 THz
    pf = PortGrid().frequencies_thz
    with pytest.raises(ValueError, match=r"channel 1 .* covers no device port"):
        _pipeline(plan).process(PortScan("dev", NOW, np.full(pf.size, -10.0), pf))


# ------------------------------------------------------------- odpm analyze


def test_analyze_with_a_plan_file(tmp_path: Path) -> None:
    plan = mixed_plan()
    osnr, lit, offset = random_scenario(plan.frequencies_thz, 5)
    tr = make_trace(
        grid_thz=plan.frequencies_thz,
        spacing_ghz=plan.widths_ghz,
        osnr_db=osnr,
        lit=lit,
        offset_ghz=offset,
        ripple_period_ghz=1600.0,
    )
    trace = tmp_path / "t.csv"
    rows = [f"{f:.7f},{p:.5f}" for f, p in zip(tr.frequency_thz, tr.power_dbm, strict=True)]
    trace.write_text("frequency_thz,power_dbm\n" + "\n".join(rows) + "\n")
    plan_csv = tmp_path / "plan.csv"
    plan_csv.write_text(write_plan_csv(plan))
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "odpm",
            "analyze",
            str(trace),
            "--rbw-ghz",
            "2.5",
            "--plan",
            str(plan_csv),
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert len(out["channels"]) == plan.count
    got = np.array([c["osnr_db"] if c["osnr_db"] is not None else np.nan for c in out["channels"]])
    m = tr.truth.present
    assert np.abs(got[m] - tr.truth.osnr_db[m]).max() <= 0.05
    bad = tmp_path / "bad.csv"
    bad.write_text("channel,centre_thz\n1,193.1\n")
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "odpm",
            "analyze",
            str(trace),
            "--rbw-ghz",
            "2.5",
            "--plan",
            str(bad),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode != 0
    assert "lacks column 'width_ghz'" in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


# ------------------------------------------------------------------ storage


def _flex_reading(plan: ChannelPlan, device: str = "flex") -> Reading:
    pf = PortGrid().frequencies_thz
    power = np.random.default_rng(6).uniform(-20, -5, pf.size)
    return _pipeline(plan).process(PortScan(device, NOW, power, pf))


def test_journal_round_trips_a_flex_plan(tmp_path: Path) -> None:
    plan = ChannelPlan.flex([(-276, 4), (-266, 6), (-248, 12), (-232, 4)])
    reading = _flex_reading(plan)
    np.testing.assert_array_equal(reading.width_ghz, [50, 75, 150, 50])
    # Same centres, other widths: a plan of its own, not confused with the first.
    same_centres = ChannelPlan.from_slots(plan.frequencies_thz.tolist(), [50, 50, 100, 50])
    other = _flex_reading(same_centres, "other")
    j = Journal(tmp_path / "j.sqlite3", retention_days=7, max_bytes=10**9)
    try:
        j.append(reading)
        j.append(other)
        for want in (reading, other):
            got = j.latest(want.device_id)
            assert got is not None and got.width_ghz is not None
            np.testing.assert_array_equal(got.width_ghz, want.width_ghz)
            np.testing.assert_array_equal(got.frequency_thz, want.frequency_thz)
            (stored,) = j.scans_between(want.device_id, 0, 2**62)
            np.testing.assert_array_equal(stored.width_ghz, want.width_ghz)
        latest = j.latest("flex")
        assert latest is not None
        row = latest.channels_as_dicts()[1]
        assert row["width_ghz"] == 75.0 and row["frequency_thz"] == 191.4375
    finally:
        j.close()


def _to_old_layout(path: Path) -> None:
    """The ``plans`` table as journals before the flex grid had it (no width column)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(
        "BEGIN; CREATE TABLE plans_old(id INTEGER PRIMARY KEY, channel BLOB NOT NULL, "
        "frequency_thz BLOB NOT NULL, UNIQUE(channel, frequency_thz)); "
        "INSERT INTO plans_old SELECT id, channel, frequency_thz FROM plans; "
        "DROP TABLE plans; ALTER TABLE plans_old RENAME TO plans; COMMIT;"
    )
    conn.close()


def test_journal_migration_reads_old_plans_with_their_spacing(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    old = Pipeline(ChannelPlan.c_band_100ghz(), PipelineConfig(), QUIET, CalibrationConfig())
    pf = PortGrid().frequencies_thz
    reading = old.process(PortScan("old", NOW, np.full(pf.size, -10.0), pf))
    j = Journal(path, retention_days=7, max_bytes=10**9)
    j.append(reading)
    j.close()
    _to_old_layout(path)
    conn = sqlite3.connect(path)
    assert "width_ghz" not in {r[1] for r in conn.execute("PRAGMA table_info(plans)")}
    conn.close()
    j = Journal(path, retention_days=7, max_bytes=10**9)
    try:
        got = j.latest("old")
        assert got is not None and got.width_ghz is not None
        np.testing.assert_array_equal(got.width_ghz, np.full(40, 100.0))
        np.testing.assert_array_equal(got.power_dbm, reading.power_dbm)
        # New scans keep being written after the migration, flex ones included.
        j.append(_flex_reading(ChannelPlan.flex([(-276, 4), (-266, 6)])))
        flex = j.latest("flex")
        assert flex is not None and flex.width_ghz is not None
        np.testing.assert_array_equal(flex.width_ghz, [50.0, 75.0])
    finally:
        j.close()


# ---------------------------------------------------------------- openconfig


def test_openconfig_uses_each_flex_channel_slot() -> None:
    plan = ChannelPlan.flex([(-276, 4), (-266, 6), (-248, 12)])
    reading = _flex_reading(plan)
    tree = channel_monitor("flex", plan, reading)
    (monitor,) = tree["openconfig-channel-monitor:channel-monitors"]["channel-monitor"]
    channels = monitor["channels"]["channel"]
    assert [(c["lower-frequency"], c["upper-frequency"]) for c in channels] == [
        ("191350000", "191400000"),
        ("191400000", "191475000"),
        ("191475000", "191625000"),
    ]
    # Power integrated over the slot: the linear sum of the ports it covers.
    assert [c["state"]["power"] for c in channels] == [f"{p:.2f}" for p in reading.power_dbm]
