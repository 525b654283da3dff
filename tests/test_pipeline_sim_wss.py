"""Wide channels behind a ROADM (the simulator's WSS stage), over a real TCP socket: the
pipeline given a signal-off or a reference trace taken from the same simulator, judged
against the simulator's own truth (``SIM:TRUTH:OSNR?``: the in-band definition, the
ASE density at the carrier *after* the WSS)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime

import numpy as np
import pytest

from drivers.odpm96 import Odpm96
from drivers.simulator import OpticalModel, SimulatedOdpm96, SimulatorServer
from drivers.transport import open_transport
from odpm.config import AlarmConfig, CalibrationConfig, PipelineConfig
from odpm.grid import ChannelPlan
from odpm.models import OsnrMethod, Quality, TraceScan
from odpm.pipeline import Pipeline


@pytest.fixture
def driver() -> Iterator[Odpm96]:
    with (
        SimulatorServer.start_tcp(seed=1515) as server,
        Odpm96(open_transport(server.address, timeout_s=5.0)) as drv,
    ):
        yield drv


def _truth(driver: Odpm96, what: str) -> np.ndarray:
    return np.array(driver.query(f"SIM:TRUTH:{what}?").split(","), dtype=float)


def _carved_32gbd(driver: Odpm96, rate_gbd: float = 32.0) -> None:
    """32 GBd (or ``rate_gbd``) on every 50 GHz slot, two slots not provisioned, a WSS
    carving 20 dB."""
    for ch in range(1, 81):
        driver.write(f"SIM:CHAN:SRAT {ch},{rate_gbd:g}")
    driver.write("SIM:CHAN:DARK 12")
    driver.write("SIM:CHAN:DARK 55")
    driver.write("SIM:WSS ON")
    driver.write("SIM:WSS:DEPT 20")
    driver.check_errors()


def _pipeline() -> Pipeline:
    return Pipeline(ChannelPlan(), PipelineConfig(), AlarmConfig(), CalibrationConfig())


def _live_scan(driver: Odpm96, **companions: np.ndarray) -> TraceScan:
    live = driver.read_trace()
    return TraceScan(
        "sim",
        datetime.now(UTC),
        live.frequency_thz,
        live.power_dbm,
        live.rbw_ghz,
        **companions,  # type: ignore[arg-type]
    )


def test_the_wss_carves_the_noise_between_channels(driver: Odpm96) -> None:
    # The premise of the cases below: between two lit slots the trace sits well below
    # the noise under the channels, and a blocked (dark) slot is carved too.
    _carved_32gbd(driver)
    driver.write("SIM:SIGN ON")
    off = driver.read_trace()
    driver.write("SIM:SIGN OFF")
    f = off.frequency_thz
    centres = ChannelPlan().frequencies_thz

    def level(thz: float) -> float:
        return float(off.power_dbm[np.argmin(np.abs(f - thz))])

    under = level(centres[30])
    between = level(centres[30] + 0.025)
    blocked = level(centres[11])
    assert under - between > 3.0  # a 6 GHz gap seen through the 6.25 GHz RBW
    assert under - blocked > 15.0
    # truth: the transmission at a lit carrier is about 0 dB
    assert np.nanmax(np.abs(_truth(driver, "WSS")[~np.isnan(_truth(driver, "OSNR"))])) < 0.05


def test_wide_carved_channels_with_a_signal_off_trace(driver: Odpm96) -> None:
    _carved_32gbd(driver)
    driver.write("SIM:OSNR 18")
    truth = _truth(driver, "OSNR")
    lit = ~np.isnan(truth)
    assert lit.sum() == 78
    live = driver.read_trace()
    driver.write("SIM:SIGN ON")  # transmitters off, passbands stay: the noise under them
    off = driver.read_trace()
    driver.write("SIM:SIGN OFF")
    driver.check_errors()
    scan = TraceScan(
        "sim",
        datetime.now(UTC),
        live.frequency_thz,
        live.power_dbm,
        live.rbw_ghz,
        noise_power_dbm=off.power_dbm,
    )
    reading = _pipeline().process(scan)
    assert np.array_equal(reading.present, lit)
    assert reading.osnr_method is not None
    assert np.all(reading.osnr_method[lit] == OsnrMethod.SIGNAL_OFF)
    err = np.abs(reading.osnr_db[lit] - truth[lit])
    within = float(np.mean(err <= 0.5))
    assert within >= 0.95, f"{within:.0%} within 0.5 dB; worst {np.nanmax(err):.2f} dB"


def _reference_then_live(driver: Odpm96) -> tuple[np.ndarray, TraceScan]:
    """The reference: the same channels at high OSNR (a low-noise amplifier, as at
    commissioning); then the live trace at a working OSNR.  Returns (truth, live scan)."""
    driver.write("SIM:AMP:NF 3")
    ref = driver.read_trace()
    driver.write("SIM:OSNR 16")
    driver.check_errors()
    truth = _truth(driver, "OSNR")
    return truth, _live_scan(driver, reference_power_dbm=ref.power_dbm)


def test_wide_channels_with_a_reference_trace(driver: Odpm96) -> None:
    # 32 GBd filling 50 GHz slots, no ROADM: the reference trace gives every channel.
    for ch in range(1, 81):
        driver.write(f"SIM:CHAN:SRAT {ch},32")
    driver.write("SIM:CHAN:DARK 12")
    truth, scan = _reference_then_live(driver)
    lit = ~np.isnan(truth)
    reading = _pipeline().process(scan)
    assert np.array_equal(reading.present, lit)
    assert reading.osnr_method is not None
    assert np.all(reading.osnr_method[lit] == OsnrMethod.REFERENCE)
    err = np.abs(reading.osnr_db[lit] - truth[lit])
    within = float(np.mean(err <= 0.5))
    assert within >= 0.95, f"{within:.0%} within 0.5 dB; worst {np.nanmax(err):.2f} dB"


def test_reference_trace_on_carved_noise_is_never_confidently_wrong(driver: Odpm96) -> None:
    # Behind the WSS the noise under a 50 GHz slot is not smooth (carved at the slot's
    # edges): a channel gets an OSNR within 0.5 dB of the truth, or no number and a flag.
    _carved_32gbd(driver)
    truth, scan = _reference_then_live(driver)
    lit = ~np.isnan(truth)
    reading = _pipeline().process(scan)
    assert np.array_equal(reading.present, lit)
    numbered = lit & np.isfinite(reading.osnr_db)
    assert np.all(reading.quality[lit & ~numbered] != Quality.OK)
    err = np.abs(reading.osnr_db[numbered] - truth[numbered])
    assert err.size == 0 or err.max() <= 0.5, f"worst {err.max():.2f} dB"


def test_wide_carved_channels_with_a_reference_trace(driver: Odpm96) -> None:
    _carved_32gbd(driver)
    truth, scan = _reference_then_live(driver)
    lit = ~np.isnan(truth)
    reading = _pipeline().process(scan)
    err = np.abs(reading.osnr_db[lit] - truth[lit])
    within = float(np.mean(err <= 0.5))
    assert within >= 0.95, f"{within:.0%} within 0.5 dB"


@pytest.mark.parametrize(
    ("depth_db", "rbw_ghz", "rate_gbd", "seed"),
    [(10, 6.25, 32, 1), (20, 6.25, 32, 1), (40, 6.25, 32, 1), (40, 12.5, 28, 2), (10, 12.5, 28, 2)],
)
def test_wide_carved_channels_without_a_second_trace_are_flagged_not_wrong(
    depth_db: int, rbw_ghz: float, rate_gbd: float, seed: int
) -> None:
    # No second trace: each lit channel is within 0.5 dB of the truth, or has no number.
    # (28 GBd at 12.5 GHz RBW behind 40 dB, seed 2: the fit gave 72 of 78 channels
    # up to 3.6 dB high before "auto" asked the trace for a sign of uncarved ASE.)
    with (
        SimulatorServer.start_tcp(seed=seed) as server,
        Odpm96(open_transport(server.address, timeout_s=5.0)) as driver,
    ):
        _carved_32gbd(driver, rate_gbd)
        driver.write(f"SIM:WSS:DEPT {depth_db}")
        driver.write("SIM:OSNR 18")
        driver.write(f"SIM:RBW {rbw_ghz}")
        driver.check_errors()
        driver.reset()  # the driver reads the RBW once per connection
        truth = _truth(driver, "OSNR")
        lit = ~np.isnan(truth)
        reading = _pipeline().process(_live_scan(driver))
    assert np.array_equal(reading.present, lit)
    numbered = lit & np.isfinite(reading.osnr_db)
    err = np.abs(reading.osnr_db[numbered] - truth[numbered])
    assert err.size == 0 or err.max() <= 0.5, (
        f"{int((err > 1).sum())} channels off by > 1 dB, worst {err.max():.2f} dB"
    )


#: A 75 GHz plan (G.694.1 flexgrid: 12 x 6.25 GHz steps) of 51 slots around 193.1 THz.
PLAN_75 = ChannelPlan.custom((193.1 + 0.075 * np.arange(-12, 39)).tolist(), 75.0)


def _400g_on_75ghz(wss: bool) -> tuple[np.ndarray, TraceScan, np.ndarray]:
    """60-64 GBd channels (400G class) on the 75 GHz plan, one dark: (truth, live, off)."""
    model = OpticalModel(seed=2, plan=PLAN_75, wss=wss)
    with (
        SimulatorServer.start_tcp(device=SimulatedOdpm96(seed=2, model=model)) as server,
        Odpm96(open_transport(server.address, timeout_s=5.0)) as driver,
    ):
        for ch in range(1, PLAN_75.count + 1):
            driver.write(f"SIM:CHAN:SRAT {ch},{60 + ch % 5}")
        driver.write("SIM:CHAN:DARK 7")
        driver.write("SIM:OSNR 18")
        driver.check_errors()
        truth = _truth(driver, "OSNR")
        live = _live_scan(driver)
        driver.write("SIM:SIGN ON")
        off = driver.read_trace()
        driver.write("SIM:SIGN OFF")
    return truth, live, off.power_dbm


@pytest.mark.parametrize("wss", [False, True])
def test_400g_on_a_75ghz_grid_with_a_signal_off_trace(wss: bool) -> None:
    truth, live, off = _400g_on_75ghz(wss)
    lit = ~np.isnan(truth)
    pipeline = Pipeline(PLAN_75, PipelineConfig(), AlarmConfig(), CalibrationConfig())
    reading = pipeline.process(dataclasses.replace(live, noise_power_dbm=off))
    assert np.array_equal(reading.present, lit)
    err = np.abs(reading.osnr_db[lit] - truth[lit])
    within = float(np.mean(err <= 0.5))
    assert within >= 0.95, f"{within:.0%} within 0.5 dB; worst {np.nanmax(err):.2f} dB"


def test_400g_on_a_75ghz_grid_without_a_second_trace() -> None:
    # Issue 15 target (>= 90 % within 0.5 dB); the Gauss-Newton fit gives all 50 lit
    # channels a number, worst 0.39 dB (the old fit: 0-1 of 51).
    truth, live, _ = _400g_on_75ghz(False)
    lit = ~np.isnan(truth)
    pipeline = Pipeline(PLAN_75, PipelineConfig(), AlarmConfig(), CalibrationConfig())
    reading = pipeline.process(live)
    assert np.array_equal(reading.present, lit)
    err = np.abs(reading.osnr_db[lit] - truth[lit])
    assert float(np.mean(err <= 0.5)) >= 0.90
    reported = np.isfinite(err)
    assert np.all(err[reported] <= 1.0)


def test_narrow_channels_behind_the_wss_without_a_second_trace(driver: Odpm96) -> None:
    # 10 GBd: the noise is visible inside each passband, beside the channel.
    for ch in range(1, 81):
        driver.write(f"SIM:CHAN:SRAT {ch},10")
    driver.write("SIM:CHAN:DARK 12")
    driver.write("SIM:WSS ON")
    driver.write("SIM:OSNR 18")
    driver.check_errors()
    truth = _truth(driver, "OSNR")
    lit = ~np.isnan(truth)
    reading = _pipeline().process(_live_scan(driver))
    err = np.abs(reading.osnr_db[lit] - truth[lit])
    assert float(np.mean(err <= 0.5)) >= 0.95


@pytest.mark.parametrize(
    ("rate_gbd", "depth_db"), [(10.0, 20.0), (10.0, 3.0), (32.0, 20.0), (32.0, 3.0)]
)
def test_a_failed_transmitter_behind_the_wss_is_dark(
    driver: Odpm96, rate_gbd: float, depth_db: float
) -> None:
    # A transmitter switched off while its passband stays open (SIM:CHAN:SIGN) leaves
    # the passband's ASE standing 3-20 dB above the carved midpoints.  It read present
    # (no loss of signal) in every one of these cases: by its peak over the carved
    # midpoints, or by its centre standing above its edges (the test for spectra wider
    # than their slots).  It is judged against the noise beside its neighbours now.
    for ch in range(1, 81):
        driver.write(f"SIM:CHAN:SRAT {ch},{rate_gbd:g}")
    for ch in (12, 13):
        driver.write(f"SIM:CHAN:DARK {ch}")  # not provisioned: blocked
    failed = [20, 30, 31, 60]  # one alone, two side by side, one more
    for ch in failed:
        driver.write(f"SIM:CHAN:SIGN {ch},ON")
    driver.write("SIM:WSS ON")
    driver.write(f"SIM:WSS:DEPT {depth_db:g}")
    driver.write("SIM:OSNR 16")
    driver.check_errors()
    r = _pipeline().process(_live_scan(driver))
    off = np.zeros(80, dtype=bool)
    off[[c - 1 for c in (12, 13, *failed)]] = True
    assert not r.present[off].any(), f"channels {r.channel[off & r.present]} read present"
    assert np.all(r.quality[off] == Quality.DARK)
    assert r.present[~off].all(), f"{int(np.sum(~r.present[~off]))} lit channels dark"


@pytest.mark.parametrize(("rbw_ghz", "depth_db"), [(10.0, 3.0), (12.5, 6.0)])
def test_a_shallow_wss_through_a_wide_rbw_is_flagged_not_wrong(
    rbw_ghz: float, depth_db: float
) -> None:
    # Through an RBW wider than the 6.25 GHz noise window, the notch a shallow WSS
    # cuts at the midpoints looks flat, and a 10 GBd channel's shoulders are not
    # resolved: the midpoints were interpolated as the noise, at quality ok 68 of 76
    # lit channels up to 1.60 dB high (10 GHz, 3 dB) and 49 up to 2.15 dB (12.5 GHz,
    # 6 dB).  Now no number; without the WSS the same line keeps every one (two seeds,
    # OSNR 18 dB: 152 of 152 within 0.5 dB, as before).
    with SimulatorServer.start_tcp(seed=2) as server:
        with Odpm96(open_transport(server.address, timeout_s=5.0)) as drv:
            drv.write(f"SIM:RBW {rbw_ghz:g}")  # read by a driver once per connection
        with Odpm96(open_transport(server.address, timeout_s=5.0)) as drv:
            for ch in range(1, 81):
                drv.write(f"SIM:CHAN:SRAT {ch},10")
            for ch in (7, 40, 41, 66):
                drv.write(f"SIM:CHAN:DARK {ch}")
            drv.write("SIM:OSNR 18")
            drv.write("SIM:WSS ON")
            drv.write(f"SIM:WSS:DEPT {depth_db:g}")
            drv.write("SIM:WSS:GUAR 8")
            drv.check_errors()
            truth = _truth(drv, "OSNR")
            reading = _pipeline().process(_live_scan(drv))
    lit = ~np.isnan(truth)
    assert np.array_equal(reading.present, lit)
    reported = reading.quality == Quality.OK
    err = np.abs(reading.osnr_db[reported] - truth[reported])
    assert err.size == 0 or err.max() <= 1.0, (
        f"{int(np.sum(err > 1))} off by up to {err.max():.2f} dB"
    )
