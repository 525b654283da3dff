"""The analysis pipeline against first-principles synthetic spectra (tests/support)."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pytest

from odpm.config import AlarmConfig, CalibrationConfig, PipelineConfig
from odpm.grid import ChannelPlan, PortGrid
from odpm.models import OsnrMethod, PortScan, Quality, TraceScan
from odpm.pipeline import (
    OSNR_REFERENCE_BANDWIDTH_GHZ,
    Pipeline,
    TraceAnalysis,
    TraceAxis,
    analyse_traces,
    osnr_db,
    signal_power_mw,
)
from tests.support.synthetic_traces import FloatArray, SyntheticTrace, make_trace, random_scenario

PLAN = ChannelPlan.c_band_50ghz()
NOW = datetime(2026, 1, 1, tzinfo=UTC)
QUIET = AlarmConfig(
    power_low_dbm=None,
    power_high_dbm=None,
    osnr_low_db=None,
    offset_high_ghz=None,
    total_power_low_dbm=None,
    total_power_high_dbm=None,
)


def _pipeline(
    config: PipelineConfig | None = None, cal: CalibrationConfig | None = None
) -> Pipeline:
    return Pipeline(PLAN, config or PipelineConfig(), QUIET, cal or CalibrationConfig())


def _scan(
    tr: SyntheticTrace, power_dbm: FloatArray | None = None, *, ascending_wavelength: bool = True
) -> TraceScan:
    f, p = tr.frequency_thz, tr.power_dbm if power_dbm is None else power_dbm
    if not ascending_wavelength:
        f, p = f[::-1], p[::-1]
    return TraceScan("dev", NOW, f, np.asarray(p, dtype=np.float32), tr.rbw_ghz)


SCENARIOS = [
    # seed, ASE tilt over the band (dB), ripple (dB p-p), ASE level (dBm/0.1 nm)
    (1, 3.0, 0.5, -35.0),
    (2, -4.0, 0.5, -30.0),
    (3, 0.0, 0.0, -40.0),
    (4, 2.0, 1.0, -35.0),
]


@pytest.mark.parametrize(("seed", "tilt", "ripple", "ase"), SCENARIOS)
def test_accuracy_against_synthetic_truth(
    seed: int, tilt: float, ripple: float, ase: float
) -> None:
    osnr, lit, offset = random_scenario(PLAN.frequencies_thz, seed)
    tr = make_trace(
        grid_thz=PLAN.frequencies_thz,
        spacing_ghz=PLAN.spacing_ghz,
        osnr_db=osnr,
        lit=lit,
        offset_ghz=offset,
        ase_dbm_per_0p1nm=ase,
        ase_tilt_db_over_band=tilt,
        ripple_db_pp=ripple,
        ripple_period_ghz=400.0 if ripple <= 0.5 else 800.0,
    )
    truth = tr.truth
    r = _pipeline().process(_scan(tr))
    np.testing.assert_array_equal(r.present, truth.present)
    m = truth.present
    assert np.abs(r.osnr_db[m] - truth.osnr_db[m]).max() <= 0.1
    assert np.abs(r.signal_power_dbm[m] - truth.signal_power_dbm[m]).max() <= 0.05
    assert np.abs(r.power_dbm - truth.slot_power_dbm).max() <= 0.05
    assert np.abs(r.offset_ghz[m] - truth.offset_ghz[m]).max() <= 0.5
    # Dark channels: nothing invented.
    assert np.isnan(r.osnr_db[~m]).all() and np.isnan(r.offset_ghz[~m]).all()
    assert np.isnan(r.signal_power_dbm[~m]).all()
    assert (r.quality[~m] == Quality.DARK).all() and (r.quality[m] == Quality.OK).all()
    assert r.lit_channels == int(m.sum())
    assert r.min_osnr_db == pytest.approx(np.nanmin(truth.osnr_db), abs=0.1)
    lit_p = truth.slot_power_dbm[m]
    assert r.flatness_db == pytest.approx(lit_p.max() - lit_p.min(), abs=0.1)


def test_axis_order_does_not_matter() -> None:
    osnr, lit, offset = random_scenario(PLAN.frequencies_thz, 5)
    tr = make_trace(
        grid_thz=PLAN.frequencies_thz, spacing_ghz=50.0, osnr_db=osnr, lit=lit, offset_ghz=offset
    )
    a = _pipeline().process(_scan(tr))
    b = _pipeline().process(_scan(tr, ascending_wavelength=False))
    perm = np.random.default_rng(0).permutation(tr.frequency_thz.size)
    c = _pipeline().process(
        TraceScan("dev", NOW, tr.frequency_thz[perm], tr.power_dbm[perm], tr.rbw_ghz)
    )
    for other in (b, c):
        np.testing.assert_allclose(other.osnr_db, a.osnr_db, atol=1e-6, equal_nan=True)
        np.testing.assert_allclose(other.power_dbm, a.power_dbm, atol=1e-6)


def test_batch_equals_single() -> None:
    traces = []
    for seed in (6, 7, 8):
        osnr, lit, offset = random_scenario(PLAN.frequencies_thz, seed)
        traces.append(
            make_trace(
                grid_thz=PLAN.frequencies_thz,
                spacing_ghz=50.0,
                osnr_db=osnr,
                lit=lit,
                offset_ghz=offset,
            )
        )
    axis = TraceAxis.build(traces[0].frequency_thz, PLAN, PipelineConfig())
    stack = np.stack([t.power_dbm for t in traces])
    batch = analyse_traces(axis, stack, 2.5)
    for i, t in enumerate(traces):
        one = analyse_traces(axis, t.power_dbm, 2.5)
        np.testing.assert_allclose(batch.osnr_db[i], one.osnr_db[0], equal_nan=True)
        np.testing.assert_array_equal(batch.present[i], t.truth.present)
    assert batch.tilt_db.shape == (3,)


@pytest.mark.parametrize("noise_method", ["midpoint", "pit"])
def test_batch_is_bit_identical_to_single_traces(noise_method: str) -> None:
    """Every field of a batch equals the same trace analysed alone, exactly: the
    numbers must not depend on how many traces were analysed together."""
    stack = []
    for seed in (10, 11, 12, 13, 14):
        osnr, lit, offset = random_scenario(PLAN.frequencies_thz, seed)
        tr = make_trace(
            grid_thz=PLAN.frequencies_thz,
            spacing_ghz=50.0,
            osnr_db=osnr,
            lit=lit,
            offset_ghz=offset,
        )
        stack.append(tr.power_dbm)
    # As the instrument delivers it: ascending wavelength, i.e. descending frequency.
    axis = TraceAxis.build(tr.frequency_thz, PLAN, PipelineConfig(noise_method=noise_method))
    batch = analyse_traces(axis, np.stack(stack), 2.5)
    for i, p in enumerate(stack):
        one = analyse_traces(axis, p, 2.5)
        for name in TraceAnalysis.__dataclass_fields__:
            np.testing.assert_array_equal(getattr(batch, name)[i], getattr(one, name)[0])


def test_non_finite_points_carry_no_power() -> None:
    """NaN/inf points (outside every slot and noise window here) change nothing but
    the total, by what those points held."""
    osnr, lit, offset = random_scenario(PLAN.frequencies_thz, 15)
    tr = make_trace(
        grid_thz=PLAN.frequencies_thz, spacing_ghz=50.0, osnr_db=osnr, lit=lit, offset_ghz=offset
    )
    axis = TraceAxis.build(tr.frequency_thz, PLAN, PipelineConfig())
    lo_thz, _ = TraceAxis.required_span_thz(PLAN, PipelineConfig())
    outside = np.flatnonzero(tr.frequency_thz < lo_thz - 0.01)[:5]
    assert outside.size == 5
    bad = np.array(tr.power_dbm, dtype=np.float32)
    bad[outside[:3]] = np.nan
    bad[outside[3:]] = np.inf
    zeroed = np.array(tr.power_dbm, dtype=np.float32)
    zeroed[outside] = -np.inf  # 0 mW
    a, b = analyse_traces(axis, bad, 2.5), analyse_traces(axis, zeroed, 2.5)
    np.testing.assert_array_equal(a.osnr_db, b.osnr_db)
    np.testing.assert_array_equal(a.power_dbm, b.power_dbm)
    assert np.isfinite(a.total_power_dbm).all()
    assert a.total_power_dbm[0] == pytest.approx(b.total_power_dbm[0], abs=1e-9)


def test_tilt_is_slope_across_the_plan() -> None:
    """Equal OSNR on a tilted ASE floor: channel powers follow the ASE tilt exactly."""
    n = PLAN.count
    tr = make_trace(
        grid_thz=PLAN.frequencies_thz,
        spacing_ghz=50.0,
        osnr_db=np.full(n, 25.0),
        lit=np.ones(n, dtype=bool),
        offset_ghz=np.zeros(n),
        ase_tilt_db_over_band=4.0,
        ripple_db_pp=0.0,
    )
    r = _pipeline().process(_scan(tr))
    assert r.tilt_db == pytest.approx(4.0, abs=0.05)


def test_pit_noise_on_a_flat_floor() -> None:
    n = PLAN.count
    tr = make_trace(
        grid_thz=PLAN.frequencies_thz,
        spacing_ghz=50.0,
        osnr_db=np.full(n, 20.0),
        lit=np.ones(n, dtype=bool),
        offset_ghz=np.zeros(n),
        ase_tilt_db_over_band=0.0,
        ripple_db_pp=0.0,
    )
    r = _pipeline(PipelineConfig(noise_method="pit")).process(_scan(tr))
    assert np.abs(r.osnr_db - 20.0).max() <= 0.1


def test_wide_signals_are_flagged_not_trusted() -> None:
    """40 GBd on a 50 GHz grid: the skirts reach the midpoints, OSNR must not be reported."""
    n = PLAN.count
    lit = np.zeros(n, dtype=bool)
    lit[10:13] = True
    tr = make_trace(
        grid_thz=PLAN.frequencies_thz,
        spacing_ghz=50.0,
        osnr_db=np.full(n, 25.0),
        lit=lit,
        offset_ghz=np.zeros(n),
        symbol_rate_gbd=40.0,
        roll_off=0.15,
        rbw_ghz=6.0,
    )
    r = _pipeline().process(_scan(tr))
    assert r.present[10:13].all()
    # Interpolation must not trust its midpoints here; the model fit (issue 15) may
    # resolve the channels, and then only with the truth's OSNR.
    assert r.osnr_method is not None
    assert not np.any(r.osnr_method[10:13] == OsnrMethod.INTERPOLATION)
    fitted = r.osnr_method[10:13] == OsnrMethod.FIT
    assert np.all(np.isnan(r.osnr_db[10:13][~fitted]))
    assert np.all(r.quality[10:13][~fitted] == Quality.NOISE_UNRESOLVED)
    assert np.all(np.abs(r.osnr_db[10:13][fitted] - 25.0) <= 0.5)


def _plateaus_on_a_floor(rise_db: dict[int, float]) -> TraceScan:
    """A flat ASE floor (-40 dBm in the RBW, 2.5 GHz RBW, 0.25 GHz steps) and, in the
    slots given, a flat-topped spectrum filling the slot's central 30 GHz, standing
    ``rise_db`` above the floor: no signal reaches the midpoints."""
    f = np.arange(191.95, 196.2, 0.00025)
    lin = np.full(f.size, 1e-4)
    for k, rise in rise_db.items():
        u_ghz = (f - PLAN.frequencies_thz[k]) * 1000
        edge = 0.5 * (1 - np.tanh((np.abs(u_ghz) - 15.0) / 1.0))
        lin += 1e-4 * (10 ** (rise / 10) - 1) * edge
    return TraceScan("dev", NOW, f, (10 * np.log10(lin)).astype(np.float32), 2.5)


def test_a_slot_standing_above_its_edges_is_present_without_an_osnr() -> None:
    # The configured margin (6 dB of peak over the interpolated noise) is for a slot
    # whose midpoints hold noise; a slot whose central half stands CENTRE_RISE_DB
    # (1 dB) above them holds a signal all the same: present, but its OSNR is not
    # given by interpolation (its peak does not clear the noise by the margin, so the
    # midpoints may hold its neighbours' signal), and the quality says so.  Below
    # 1 dB it is dark, as before.
    r = _pipeline().process(_plateaus_on_a_floor({10: 1.5, 20: 0.6, 30: 10.0}))
    assert r.present[10] and r.quality[10] == Quality.NOISE_UNRESOLVED
    assert math.isnan(r.osnr_db[10])
    assert not r.present[20] and r.quality[20] == Quality.DARK
    assert r.present[30] and r.quality[30] == Quality.OK
    assert r.lit_channels == 2


def test_wavelength_calibration_shifts_power() -> None:
    osnr, lit, offset = random_scenario(PLAN.frequencies_thz, 9)
    tr = make_trace(
        grid_thz=PLAN.frequencies_thz, spacing_ghz=50.0, osnr_db=osnr, lit=lit, offset_ghz=offset
    )
    cal = CalibrationConfig(wavelength_correction=[(191.0, 1.0), (197.0, 1.0)])
    base = _pipeline().process(_scan(tr))
    corrected = _pipeline(cal=cal).process(_scan(tr))
    np.testing.assert_allclose(corrected.power_dbm, base.power_dbm + 1.0, atol=1e-4)
    np.testing.assert_allclose(corrected.osnr_db, base.osnr_db, atol=1e-4, equal_nan=True)


def test_axis_not_covering_the_plan_is_an_error() -> None:
    f = np.linspace(192.5, 196.2, 2000)
    with pytest.raises(ValueError, match="channel plan needs"):
        TraceAxis.build(f, PLAN, PipelineConfig())


def test_published_test_vector_scikit_comm() -> None:
    """scikit-comm's estimate_snr_spectrum vector: noise 0.5 per bin, signal+noise 6.0
    on the bins x = -1, 0, 1, signal range [-0.9, 0.6] -> samples x = -1..1, noise
    bandwidth one bin.  scikit-comm integrates signal+noise with np.trapz over the
    samples x[i0:i1] = [-1, 0] (6.0) and subtracts the noise over x[i1] - x[i0] = 2 bins.
    Those quantities through our signal and OSNR formulas give exactly 10.0 dB."""
    signal = signal_power_mw(6.0, 0.5, 2.0)
    assert float(osnr_db(signal, 0.5, reference_bandwidth_ghz=1.0)) == pytest.approx(
        10.0, abs=1e-12
    )
    # And the reference bandwidth of the default is 0.1 nm.
    assert OSNR_REFERENCE_BANDWIDTH_GHZ == 12.5


def test_test_vector_through_the_pipeline_integration() -> None:
    """The same spectrum integrated the pipeline's way (exact integral of the sampled
    trace over the slot) with 12.5 GHz bins: three bins of 6.0 hold 5.5 x 3 of signal
    over the 0.5 floor, so OSNR in one bin is 16.5 / 0.5 = 33 (15.185 dB)."""
    bin_ghz = 12.5
    x = np.arange(-40, 41)
    y = np.full(x.size, 0.5)
    y[(x >= -1) & (x <= 1)] = 6.0
    f_thz = 193.1 + x * bin_ghz / 1000.0
    plan = ChannelPlan.custom([193.1], slot_width_ghz=8 * bin_ghz)
    axis = TraceAxis.build(f_thz, plan, PipelineConfig(noise_window_ghz=2 * bin_ghz))
    # Slot +/- 4 bins, noise windows on the flat floor at +/- 4 bins: the exact integral
    # of the sampled (piecewise-linear) trace holds 3 x 5.5 above the floor.
    r = analyse_traces(axis, 10 * np.log10(y), rbw_ghz=bin_ghz)
    signal_mw = 10 ** (r.signal_power_dbm[0, 0] / 10)
    assert signal_mw == pytest.approx(16.5, rel=1e-5)
    assert r.osnr_db[0, 0] == pytest.approx(10 * math.log10(16.5 / 0.5), abs=1e-4)


# ----------------------------------------------------------------- port readings


def _port_scan(power: np.ndarray) -> PortScan:
    return PortScan("dev", NOW, power, PortGrid().frequencies_thz)


def test_port_reading_maps_channels_and_sums_total() -> None:
    ports = PortGrid().frequencies_thz
    power = np.full(ports.size, np.nan)
    rng = np.random.default_rng(1)
    idx = PLAN.port_indices(PortGrid())
    power[idx] = rng.uniform(-25, -5, idx.size)
    power[idx[5]] = np.nan  # below floor
    power[0] = -20.0  # a port outside the plan still counts in the total
    offsets = rng.uniform(-0.5, 0.5, ports.size)
    cal = CalibrationConfig(port_offsets_db=offsets.tolist())
    r = _pipeline(cal=cal).process(_port_scan(power))
    expect = power[idx] + offsets[idx]
    np.testing.assert_allclose(r.power_dbm, expect, equal_nan=True)
    calibrated = power + offsets
    total = 10 * np.log10(np.nansum(10 ** (calibrated / 10)))
    assert r.total_power_dbm == pytest.approx(total, abs=1e-9)
    assert not r.present[5] and r.quality[5] == Quality.DARK
    assert (r.quality[r.present] == Quality.POWER_ONLY).all()
    assert np.isnan(r.osnr_db).all() and np.isnan(r.offset_ghz).all()
    assert np.isnan(r.signal_power_dbm).all() and math.isnan(r.min_osnr_db)
    assert r.lit_channels == PLAN.count - 1
    d = r.to_dict()
    assert d["channels"][0]["osnr_db"] is None and d["min_osnr_db"] is None


def test_port_reading_tilt_and_flatness() -> None:
    idx = PLAN.port_indices(PortGrid())
    power = np.full(96, np.nan)
    f = PLAN.frequencies_thz
    power[idx] = -10.0 + 2.0 * (f - f[0]) / (f[-1] - f[0])  # +2 dB across the band
    r = _pipeline().process(_port_scan(power))
    assert r.tilt_db == pytest.approx(2.0, abs=1e-9)
    assert r.flatness_db == pytest.approx(2.0, abs=1e-9)


def test_port_reading_tilt_follows_the_lit_set_from_scan_to_scan() -> None:
    """The tilt weights depend on which channels are lit; one pipeline fed scans whose
    lit sets change (and change back) must match a fresh least-squares fit each time."""
    idx = PLAN.port_indices(PortGrid())
    f = PLAN.frequencies_thz
    rng = np.random.default_rng(3)
    pipe = _pipeline()
    dark_sets = [[], [0, 1, 2], [40], [], [0, 1, 2], list(range(2, 80))]
    for dark in dark_sets:
        power = np.full(96, np.nan)
        power[idx] = rng.uniform(-20, -5, f.size)
        power[idx[dark]] = np.nan
        r = pipe.process(_port_scan(power))
        lit = np.ones(f.size, dtype=bool)
        lit[dark] = False
        slope_db_per_thz = np.polyfit(f[lit], power[idx][lit], 1)[0]
        assert r.tilt_db == pytest.approx(slope_db_per_thz * (f[-1] - f[0]), abs=1e-9)
        assert r.lit_channels == int(lit.sum())
        np.testing.assert_array_equal(r.quality == Quality.POWER_ONLY, lit)
    one = np.full(96, np.nan)
    one[idx[7]] = -10.0
    r = pipe.process(_port_scan(one))
    assert math.isnan(r.tilt_db) and r.flatness_db == 0.0
