"""End to end: MEAS:TRAC? from the simulator over a real TCP socket, through the pipeline,
against the simulator's own ground truth (``SIM:TRUTH:...?``, computed from its physics model,
not from pipeline code)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import numpy as np
import pytest

from drivers.odpm96 import Odpm96
from drivers.simulator import SimulatorServer
from drivers.transport import open_transport
from odpm.config import AlarmConfig, CalibrationConfig, PipelineConfig
from odpm.grid import ChannelPlan
from odpm.models import OsnrMethod, Quality, TraceScan
from odpm.pipeline import Pipeline


@pytest.fixture
def driver() -> Iterator[Odpm96]:
    with (
        SimulatorServer.start_tcp(seed=2026) as server,
        Odpm96(open_transport(server.address, timeout_s=5.0)) as drv,
    ):
        yield drv


def _truth(driver: Odpm96, what: str) -> np.ndarray:
    return np.array(driver.query(f"SIM:TRUTH:{what}?").split(","), dtype=float)


def _analyse(driver: Odpm96) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    trace = driver.read_trace()
    pipeline = Pipeline(ChannelPlan(), PipelineConfig(), AlarmConfig(), CalibrationConfig())
    reading = pipeline.process(
        TraceScan("sim", datetime.now(UTC), trace.frequency_thz, trace.power_dbm, trace.rbw_ghz)
    )
    return reading.present, reading.osnr_db, reading.offset_ghz, reading.quality


def test_osnr_from_meas_trac_matches_simulator_truth(driver: Odpm96) -> None:
    # 10 GBd everywhere: narrow enough that the noise floor is resolvable at every
    # inter-channel midpoint (IEC 61280-2-9's precondition for interpolation).
    for ch in range(1, 81):
        driver.write(f"SIM:CHAN:SRAT {ch},10")
    driver.write("SIM:CHAN:DARK 7")
    driver.write("SIM:CHAN:DARK 40")
    driver.write("SIM:OSNR 18")
    driver.check_errors()

    truth_osnr = _truth(driver, "OSNR")
    truth_offset = _truth(driver, "OFFS")
    lit = ~np.isnan(truth_osnr)
    assert lit.sum() == 78

    present, osnr, offset, quality = _analyse(driver)
    assert np.array_equal(present, lit)
    assert np.all(quality[lit] == Quality.OK)
    assert np.all(np.isnan(osnr[~lit]))
    err = np.abs(osnr[lit] - truth_osnr[lit])
    assert err.max() <= 0.5, f"worst OSNR error {err.max():.3f} dB at channel {err.argmax() + 1}"
    # the spread of truths spans several dB (tilt, ripple, power mix): not one number repeated
    assert np.ptp(truth_osnr[lit]) > 1.0
    assert np.nanmax(np.abs(offset[lit] - truth_offset[lit])) <= 1.0


def test_default_demo_gives_every_lit_channel_an_osnr(driver: Odpm96) -> None:
    # The simulator's default mix has 28 GBd channels, whose spectra reach the 50 GHz
    # midpoints through the 6.25 GHz RBW, so interpolation cannot resolve their noise
    # (before issue 15 a third to two thirds of the lit channels got no OSNR here).
    # Interpolation keeps the channels it resolves; the raised-cosine fit gives the
    # others theirs: every lit channel within 0.5 dB of the simulator's truth.
    truth_osnr = _truth(driver, "OSNR")
    lit = ~np.isnan(truth_osnr)
    trace = driver.read_trace()
    pipeline = Pipeline(ChannelPlan(), PipelineConfig(), AlarmConfig(), CalibrationConfig())
    reading = pipeline.process(
        TraceScan("sim", datetime.now(UTC), trace.frequency_thz, trace.power_dbm, trace.rbw_ghz)
    )
    assert np.array_equal(reading.present, lit)
    assert np.all(reading.quality[lit] == Quality.OK)
    err = np.abs(reading.osnr_db[lit] - truth_osnr[lit])
    assert err.max() <= 0.5, f"worst OSNR error {err.max():.3f} dB"
    assert reading.osnr_method is not None and reading.osnr_uncertainty_db is not None
    methods = {OsnrMethod(int(m)) for m in reading.osnr_method[lit]}
    # The shoulders (issue 15) may stand in where a wide neighbour's skirt lifts a
    # narrow channel's midpoint noise above its shoulders.
    assert {OsnrMethod.INTERPOLATION, OsnrMethod.FIT} <= methods
    assert methods <= {OsnrMethod.INTERPOLATION, OsnrMethod.SHOULDER, OsnrMethod.FIT}
    assert np.all(reading.osnr_uncertainty_db[lit] <= 0.4)


def test_interpolation_alone_flags_wide_channels_rather_than_lie(driver: Odpm96) -> None:
    # With the in-band methods off, the old contract holds: each lit channel gets an
    # OSNR within 0.5 dB of the truth, or is flagged noise_unresolved with no OSNR.
    truth_osnr = _truth(driver, "OSNR")
    lit = ~np.isnan(truth_osnr)
    trace = driver.read_trace()
    config = PipelineConfig(inband_methods=False)
    pipeline = Pipeline(ChannelPlan(), config, AlarmConfig(), CalibrationConfig())
    reading = pipeline.process(
        TraceScan("sim", datetime.now(UTC), trace.frequency_thz, trace.power_dbm, trace.rbw_ghz)
    )
    present, osnr, quality = reading.present, reading.osnr_db, reading.quality
    assert np.array_equal(present, lit)
    measured = lit & (quality == Quality.OK)
    flagged = lit & (quality == Quality.NOISE_UNRESOLVED)
    assert np.array_equal(measured | flagged, lit)
    assert flagged.any() and measured.any()
    assert np.all(np.isnan(osnr[flagged]))
    assert np.abs(osnr[measured] - truth_osnr[measured]).max() <= 0.5


def test_signal_off_trace_from_the_simulator(driver: Odpm96) -> None:
    # 32 GBd on every 50 GHz slot: a signal-off trace (SIM:SIGN ON, as a commissioning
    # engineer switches the transmitters off) gives the noise under each channel.
    for ch in range(1, 81):
        driver.write(f"SIM:CHAN:SRAT {ch},32")
    driver.write("SIM:CHAN:DARK 12")
    driver.check_errors()
    truth_osnr = _truth(driver, "OSNR")
    lit = ~np.isnan(truth_osnr)
    live = driver.read_trace()
    driver.write("SIM:SIGN ON")
    off = driver.read_trace()
    driver.write("SIM:SIGN OFF")
    driver.check_errors()
    pipeline = Pipeline(ChannelPlan(), PipelineConfig(), AlarmConfig(), CalibrationConfig())
    reading = pipeline.process(
        TraceScan(
            "sim",
            datetime.now(UTC),
            live.frequency_thz,
            live.power_dbm,
            live.rbw_ghz,
            noise_power_dbm=off.power_dbm,
        )
    )
    assert np.array_equal(reading.present, lit)
    assert reading.osnr_method is not None
    assert np.all(reading.osnr_method[lit] == OsnrMethod.SIGNAL_OFF)
    err = np.abs(reading.osnr_db[lit] - truth_osnr[lit])
    assert np.mean(err <= 0.5) >= 0.95, f"worst {err.max():.2f} dB"


def _wide_channels_through_12p5ghz(
    driver: Odpm96, osnr_db: float | None, averaging: int, rolloff: float | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """28-32 GBd on every 50 GHz slot (one dark), seen through 0.1 nm (12.5 GHz,
    SIM:RBW): the lit mask, the truth and the pipeline's reading of one trace."""
    rng = np.random.default_rng(12)
    for ch in range(1, 81):
        driver.write(f"SIM:CHAN:SRAT {ch},{rng.uniform(28, 32):.2f}")
    driver.write("SIM:CHAN:DARK 30")
    if rolloff is not None:
        driver.write(f"SIM:ROLL {rolloff}")
    if osnr_db is not None:
        driver.write(f"SIM:OSNR {osnr_db}")
    driver.write("SIM:RBW 12.5")
    driver.check_errors()
    driver.reset()  # the driver reads the RBW once per connection
    driver.set_averaging(averaging)
    truth_osnr = _truth(driver, "OSNR")
    lit = ~np.isnan(truth_osnr)
    trace = driver.read_trace()
    assert trace.rbw_ghz == 12.5
    pipeline = Pipeline(ChannelPlan(), PipelineConfig(), AlarmConfig(), CalibrationConfig())
    reading = pipeline.process(
        TraceScan("sim", datetime.now(UTC), trace.frequency_thz, trace.power_dbm, trace.rbw_ghz)
    )
    assert np.array_equal(reading.present, lit), "a lit channel called dark (or the reverse)"
    return lit, truth_osnr, reading.osnr_db


@pytest.mark.parametrize(
    ("seed", "osnr_db", "averaging", "rolloff"),
    [(2026, 18.0, 1, None), (7, 18.0, 1, None), (2026, 20.0, 4, None), (11, 18.0, 1, 0.02)],
)
def test_wide_channels_through_a_12p5ghz_rbw_are_never_dark_nor_wrong(
    seed: int, osnr_db: float, averaging: int, rolloff: float | None
) -> None:
    # Issue 15's target for 28-32 GBd filling 50 GHz slots, on the simulator against
    # its truth, at the generator's OSNRs (14-26 dB): >= 90 % of the lit channels
    # within 0.5 dB, none dark, none reported more than 1 dB off.  The fit's
    # uncertainty is what decides (before: the variance was inflated 7.5 x for
    # correlation the simulator's white reading noise does not have: 59-64 of 79 at
    # 18 dB; and at roll-off 0.02, which a 12.5 GHz RBW barely shows, the roll-off's
    # noisy last step counted as a fit still moving: 39-48 of 79).
    with (
        SimulatorServer.start_tcp(seed=seed) as server,
        Odpm96(open_transport(server.address, timeout_s=5.0)) as driver,
    ):
        lit, truth_osnr, osnr = _wide_channels_through_12p5ghz(driver, osnr_db, averaging, rolloff)
    err = np.abs(osnr[lit] - truth_osnr[lit])
    given = np.isfinite(err)
    assert np.mean(err <= 0.5) >= 0.9, f"{np.sum(err <= 0.5)} of {lit.sum()} within 0.5 dB"
    assert not given.any() or err[given].max() <= 1.0, f"worst {err[given].max():.2f} dB"


@pytest.mark.parametrize("averaging", [1, 16])
def test_wide_channels_at_the_demo_osnr_through_12p5ghz_are_flagged_not_wrong(
    driver: Odpm96, averaging: int
) -> None:
    # At the simulator's default OSNR (~32.5 dB) the ASE under a channel is ~0.2 % of
    # the reading at its centre through 12.5 GHz, below one scan's reading noise
    # (0.02 dB = 0.46 %): the fit cannot separate it (uncertainty 2.5 dB single scan)
    # and says so.  What it reports must still be right, and no lit channel dark.
    lit, truth_osnr, osnr = _wide_channels_through_12p5ghz(driver, None, averaging)
    given = lit & np.isfinite(osnr)
    err = np.abs(osnr[given] - truth_osnr[given])
    assert err.size == 0 or err.max() <= 1.0, f"worst OSNR error {err.max():.2f} dB"


def _line_of(
    driver: Odpm96, rate_gbd: float, roll_off: float, dark: list[int], osnr_db: float
) -> None:
    """Every channel at one symbol rate and roll-off, ``dark`` not provisioned."""
    for ch in range(1, 81):
        driver.write(f"SIM:CHAN:SRAT {ch},{rate_gbd:g}")
    driver.write(f"SIM:ROLL {roll_off:g}")
    for ch in dark:
        driver.write(f"SIM:CHAN:DARK {ch}")
    driver.write(f"SIM:OSNR {osnr_db:g}")
    driver.check_errors()


def _assert_presence_as_truth(driver: Odpm96) -> None:
    """No lit channel dark, no dark slot lit, no OSNR off by more than 1 dB; the lit
    channels without a number flagged ``noise_unresolved``."""
    truth_osnr = _truth(driver, "OSNR")
    lit = ~np.isnan(truth_osnr)
    present, osnr, _offset, quality = _analyse(driver)
    assert np.all(present[lit]), f"{int(np.sum(~present[lit]))} lit channels called dark"
    assert not np.any(present[~lit])
    given = lit & np.isfinite(osnr)
    assert np.all(quality[lit & ~given] == Quality.NOISE_UNRESOLVED)
    err = np.abs(osnr[given] - truth_osnr[given])
    assert err.size == 0 or err.max() <= 1.0, f"worst OSNR error {err.max():.2f} dB"


def test_channels_wider_than_their_slots_are_never_dark(driver: Odpm96) -> None:
    # 45 GBd at roll-off 0.2 is 54 GHz of spectrum in each 50 GHz slot: every
    # midpoint holds the two neighbours' signal, and a lit channel's peak stands only
    # a few dB above it.  The noise-based presence test alone called 47-57 of the 78
    # lit channels dark (a false loss-of-signal alarm on each); the slot's centre
    # standing above its edges keeps them lit, and the two dark slots dark.
    _line_of(driver, 45.0, 0.2, [12, 55], 18.0)
    _assert_presence_as_truth(driver)


def test_a_line_packed_at_the_nyquist_limit_is_not_dark(driver: Odpm96) -> None:
    # 48 GBd at roll-off 0.1 on 50 GHz: neighbouring raised cosines add up to a flat
    # spectrum, so a lit slot stands neither above its edges nor above the midpoints
    # (both hold its neighbours' signal): 21 of the 70 lit channels here read dark
    # (6.25 GHz RBW).  The dark slots between them are dips near the ASE; a lit slot
    # stands far above the nearest ones.
    dark = [5, 12, 20, 27, 35, 43, 50, 58, 66, 73]  # at most 8 apart
    _line_of(driver, 48.0, 0.1, dark, 16.0)
    _assert_presence_as_truth(driver)
