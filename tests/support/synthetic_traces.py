"""Synthetic DWDM spectra with known truth, built from first principles.

Written without looking at (or importing) the pipeline: only physics and the
definition of an OSA trace.

* Each lit channel has a raised-cosine power spectral density (PSD) of total
  power ``P`` (mW), symbol rate ``R`` (GBd) and roll-off ``beta``, centred at the
  grid frequency plus an offset.
* The amplified spontaneous emission (ASE) PSD is
  ``N(f) = A exp(kappa u) (1 + a sin(omega u))`` with ``u = f - f_ref``: an
  exponential (dB-linear) tilt and a sinusoidal gain ripple.
* The instrument measures, at each point ``x``, the power through a Gaussian
  filter ``H(f - x) = exp(-(f - x)^2 / (2 sigma^2))`` whose noise-equivalent
  bandwidth ``int H = sigma sqrt(2 pi)`` is the RBW: ``p(x) = int S(f) H(f - x) df``.
  The ASE part has a closed form (a Gaussian integral of ``exp((kappa + i omega) u)``);
  the signal part is integrated numerically on a 5 MHz grid.
* Points are sampled uniformly in wavelength (as an OSA scans), ``f = c / lambda``.

Truth returned per channel: presence, the signal power ``P``, the power in the slot
(signal plus the ASE integrated over centre +/- spacing/2), the OSNR
``P / (N(f_c) x 12.5 GHz)`` with ``N`` the physical (unfiltered) ASE PSD at the
channel's true centre ``f_c``, and the centre offset.

Limit of the comparison (documented, not hidden): interpolating the noise linearly
from the midpoints is exact only when ``N`` is linear between them.  A ripple of
relative amplitude ``a`` and period ``T`` makes the interpolation at the centre wrong
by up to ``a (1 - cos(pi s / T))`` for spacing ``s``, and the tilt adds
``(kappa s / 2)^2 / 2``.  The default ripple (0.5 dB peak to peak, 400 GHz period)
and a 3 dB tilt over the band keep that below 0.5 % of the noise (under 0.02 dB of
OSNR), so the 0.1 dB acceptance bound measures the method, not the test's ASE shape.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

SPEED_OF_LIGHT_M_S = 299_792_458.0
REFERENCE_BANDWIDTH_GHZ = 12.5

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Truth:
    channel: npt.NDArray[np.int64]
    grid_thz: FloatArray
    present: npt.NDArray[np.bool_]
    signal_power_dbm: FloatArray  # NaN for dark channels
    slot_power_dbm: FloatArray
    osnr_db: FloatArray  # NaN for dark channels
    offset_ghz: FloatArray  # NaN for dark channels


@dataclass(frozen=True)
class SyntheticTrace:
    #: Sampled uniformly in wavelength, ascending wavelength (descending frequency).
    wavelength_nm: FloatArray
    frequency_thz: FloatArray
    power_dbm: FloatArray
    rbw_ghz: float
    truth: Truth


def ase_psd_mw_per_ghz(
    f_ghz: FloatArray,
    ref_ghz: float,
    psd_ref_mw_per_ghz: float,
    kappa_per_ghz: float,
    ripple_rel: float,
    ripple_period_ghz: float,
) -> FloatArray:
    """The physical ASE PSD (before the instrument's filter)."""
    u = f_ghz - ref_ghz
    omega = 2 * math.pi / ripple_period_ghz
    return np.asarray(
        psd_ref_mw_per_ghz * np.exp(kappa_per_ghz * u) * (1 + ripple_rel * np.sin(omega * u))
    )


def _filtered_ase_mw(
    x_ghz: FloatArray,
    ref_ghz: float,
    psd_ref: float,
    kappa: float,
    ripple_rel: float,
    period_ghz: float,
    sigma_ghz: float,
) -> FloatArray:
    """int N(f) H(f - x) df in closed form: for z = kappa + i omega,
    int exp(z u) exp(-(u - x')^2 / 2 sigma^2) du = sigma sqrt(2 pi) exp(z x' + z^2 sigma^2 / 2)."""
    u = x_ghz - ref_ghz
    omega = 2 * math.pi / period_ghz
    norm = sigma_ghz * math.sqrt(2 * math.pi)
    tilt = np.exp(kappa * u + kappa**2 * sigma_ghz**2 / 2)
    z = complex(kappa, omega)
    rip = np.imag(np.exp(z * u + z * z * sigma_ghz**2 / 2))
    return np.asarray(psd_ref * norm * (tilt + ripple_rel * rip))


def raised_cosine_psd(
    u_ghz: FloatArray, power_mw: float, symbol_rate_gbd: float, beta: float
) -> FloatArray:
    """Raised-cosine PSD of total power ``power_mw`` (flat P/R in the passband)."""
    a = np.abs(u_ghz)
    f1 = (1 - beta) * symbol_rate_gbd / 2
    f2 = (1 + beta) * symbol_rate_gbd / 2
    level = power_mw / symbol_rate_gbd
    roll = level / 2 * (1 + np.cos(math.pi / (beta * symbol_rate_gbd) * (a - f1)))
    return np.asarray(np.where(a <= f1, level, np.where(a <= f2, roll, 0.0)))


def make_trace(
    *,
    grid_thz: FloatArray,
    spacing_ghz: float | npt.ArrayLike,
    osnr_db: FloatArray,
    lit: npt.NDArray[np.bool_],
    offset_ghz: FloatArray,
    rbw_ghz: float = 2.5,
    step_nm: float = 0.004,
    start_thz: float = 191.95,
    stop_thz: float = 196.20,
    symbol_rate_gbd: float | npt.ArrayLike = 10.0,
    roll_off: float | npt.ArrayLike = 0.2,
    ase_dbm_per_0p1nm: float = -35.0,
    ase_tilt_db_over_band: float = 3.0,
    ripple_db_pp: float = 0.5,
    ripple_period_ghz: float = 400.0,
    wss_carve_db: float = 0.0,
    wss_bandwidth_ghz: float | None = None,
    wss_edge_ghz: float = 2.0,
    signals_on: bool = True,
    failed: npt.ArrayLike | None = None,
) -> SyntheticTrace:
    """One spectrum; channel powers follow from the requested OSNR and the ASE at
    each true centre (``P = OSNR x N(f_c) x T(f_c) x 12.5 GHz``).

    ROADM carving: with ``wss_carve_db`` > 0 the ASE has crossed a WSS whose passband
    around each *lit* channel's grid slot is a box of ``wss_bandwidth_ghz`` (default
    the spacing minus 6 GHz) with Gaussian edges of ``wss_edge_ghz``; outside the
    passbands the ASE is attenuated by ``wss_carve_db``.  ``T(f)`` is that
    transmission.  ``signals_on=False`` gives the same trace with every channel
    switched off (a signal-off trace), with the same truth.

    Flexible grid (ITU-T G.694.1): ``spacing_ghz`` may be one width per channel (the
    slot of channel ``i`` is its centre +/- ``spacing_ghz[i] / 2``), used for the WSS
    passbands and the slot truth.

    A failed transmitter: ``failed`` marks lit channels whose transmitter is off while
    their WSS passband stays open (as a ROADM keeps a provisioned channel's), so their
    slot holds the passband's ASE and nothing else; the truth calls them dark (no
    signal: a loss of signal to report)."""
    grid_ghz = np.asarray(grid_thz, dtype=np.float64) * 1000.0
    widths = np.broadcast_to(np.asarray(spacing_ghz, dtype=np.float64), grid_ghz.shape)
    ref_ghz = float(grid_ghz.mean())
    band = float(grid_ghz[-1] - grid_ghz[0])
    kappa = ase_tilt_db_over_band * math.log(10) / 10 / band
    # Peak-to-peak ratio r = 10^(pp/10) = (1 + a)/(1 - a)  =>  a = tanh(pp ln10 / 20).
    ripple_rel = math.tanh(ripple_db_pp * math.log(10) / 20)
    psd_ref = 10 ** (ase_dbm_per_0p1nm / 10) / REFERENCE_BANDWIDTH_GHZ

    # Axis: uniform in wavelength, ascending wavelength.
    lam0 = SPEED_OF_LIGHT_M_S / stop_thz / 1e3
    lam1 = SPEED_OF_LIGHT_M_S / start_thz / 1e3
    wavelength = lam0 + step_nm * np.arange(
        math.floor((lam1 - lam0) / step_nm) + 1, dtype=np.float64
    )
    x_ghz = SPEED_OF_LIGHT_M_S / wavelength  # nm -> GHz: c[m/s] / lambda[nm] = GHz
    sigma = rbw_ghz / math.sqrt(2 * math.pi)

    lit_mask = np.asarray(lit, dtype=bool)  # provisioned: a WSS passband is open
    failed_mask = (
        np.zeros_like(lit_mask) if failed is None else np.asarray(failed, dtype=bool) & lit_mask
    )
    bandwidth = (widths - 6.0 if wss_bandwidth_ghz is None else widths * 0 + wss_bandwidth_ghz)[
        lit_mask
    ]
    lit_grid = grid_ghz[lit_mask]

    def transmission(f: FloatArray) -> FloatArray:
        if wss_carve_db <= 0:
            return np.ones_like(f)
        floor = 10 ** (-wss_carve_db / 10)
        k = 1 / (math.sqrt(2) * wss_edge_ghz)
        d = f[..., None] - lit_grid
        box = 0.5 * (_erf((d + bandwidth / 2) * k) - _erf((d - bandwidth / 2) * k))
        return np.asarray(floor + (1 - floor) * np.minimum(box.sum(axis=-1), 1.0))

    def slot_transmission(f: FloatArray) -> FloatArray:
        """T on many points: interpolated from a 0.05 GHz table (T is smooth there)."""
        if wss_carve_db <= 0:
            return np.ones_like(f)
        table_f = np.arange(float(f.min()), float(f.max()) + 0.05, 0.05)
        return np.asarray(np.interp(f, table_f, transmission(table_f)))

    if wss_carve_db > 0:
        # Carved ASE has no closed form through the RBW: build it on a 0.05 GHz grid
        # and convolve with the Gaussian filter (peak 1, noise-equivalent width RBW).
        df = 0.05
        lo, hi = float(x_ghz.min()) - 10 * sigma, float(x_ghz.max()) + 10 * sigma
        f_fine = np.arange(lo, hi + df, df)
        dense = ase_psd_mw_per_ghz(
            f_fine, ref_ghz, psd_ref, kappa, ripple_rel, ripple_period_ghz
        ) * transmission(f_fine)
        half = math.ceil(8 * sigma / df)
        kernel = np.exp(-((np.arange(-half, half + 1) * df) ** 2) / (2 * sigma * sigma))
        size = 1 << math.ceil(math.log2(dense.size + kernel.size))
        spectrum = np.fft.rfft(dense, size) * np.fft.rfft(kernel, size)
        filtered = np.fft.irfft(spectrum, size)[half : half + dense.size] * df
        trace = np.interp(x_ghz, f_fine, filtered)
    else:
        trace = _filtered_ase_mw(
            x_ghz, ref_ghz, psd_ref, kappa, ripple_rel, ripple_period_ghz, sigma
        )

    centre = grid_ghz + offset_ghz
    noise_at_centre = ase_psd_mw_per_ghz(
        centre, ref_ghz, psd_ref, kappa, ripple_rel, ripple_period_ghz
    ) * transmission(centre)
    power_mw = 10 ** (np.asarray(osnr_db) / 10) * noise_at_centre * REFERENCE_BANDWIDTH_GHZ

    rates = np.broadcast_to(np.asarray(symbol_rate_gbd, dtype=np.float64), grid_ghz.shape)
    betas = np.broadcast_to(np.asarray(roll_off, dtype=np.float64), grid_ghz.shape)
    du = 0.005
    for i in np.flatnonzero(lit_mask & ~failed_mask & signals_on):
        half_extent = (1 + betas[i]) * rates[i] / 2
        u = np.arange(-half_extent, half_extent + du / 2, du)
        reach = half_extent + 10 * sigma
        s = raised_cosine_psd(u, 1.0, float(rates[i]), float(betas[i]))
        w = s / s.sum() * power_mw[i]  # the discrete spectrum holds exactly P
        near = np.flatnonzero(np.abs(x_ghz - centre[i]) <= reach)
        d = x_ghz[near][:, None] - (centre[i] + u)[None, :]
        trace[near] += np.exp(-(d * d) / (2 * sigma * sigma)) @ w

    # Slot truth: all signal power (compact, well inside the slot) plus ASE over the slot.
    if np.all(widths == widths[0]):  # one width: the same samples as ever, bit for bit
        fine = np.linspace(-widths[0] / 2, widths[0] / 2, 5001)[None, :]
    else:
        fine = np.linspace(-widths / 2, widths / 2, 5001, axis=1)
    ase_in_slot = np.trapezoid(
        ase_psd_mw_per_ghz(
            grid_ghz[:, None] + fine,
            ref_ghz,
            psd_ref,
            kappa,
            ripple_rel,
            ripple_period_ghz,
        )
        * slot_transmission(grid_ghz[:, None] + fine),
        fine,
        axis=1,
    )
    lit = lit_mask & ~failed_mask  # carrying a signal
    slot_mw = ase_in_slot + np.where(lit, power_mw, 0.0)
    nan = np.full(grid_ghz.size, np.nan)
    truth = Truth(
        channel=np.arange(1, grid_ghz.size + 1, dtype=np.int64),
        grid_thz=np.asarray(grid_thz, dtype=np.float64),
        present=np.asarray(lit, dtype=bool),
        signal_power_dbm=np.where(lit, 10 * np.log10(power_mw), nan),
        slot_power_dbm=10 * np.log10(slot_mw),
        osnr_db=np.where(lit, np.asarray(osnr_db, dtype=np.float64), nan),
        offset_ghz=np.where(lit, np.asarray(offset_ghz, dtype=np.float64), nan),
    )
    return SyntheticTrace(
        wavelength_nm=wavelength,
        frequency_thz=x_ghz / 1000.0,
        power_dbm=10 * np.log10(trace),
        rbw_ghz=rbw_ghz,
        truth=truth,
    )


def _erf(x: FloatArray) -> FloatArray:
    """erf by Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7): numpy has none."""
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (
        0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))
    )
    return np.asarray(sign * (1.0 - poly * np.exp(-a * a)))


def random_scenario(
    grid_thz: FloatArray, seed: int, dark_fraction: float = 0.2
) -> tuple[FloatArray, npt.NDArray[np.bool_], FloatArray]:
    """OSNR spread over 8-32 dB, some channels dark, offsets within +/-3 GHz."""
    rng = np.random.default_rng(seed)
    n = grid_thz.size
    osnr = rng.permutation(np.linspace(8.0, 32.0, n))
    lit = rng.random(n) >= dark_fraction
    offset = rng.uniform(-3.0, 3.0, n)
    offset[:2] = (-3.0, 3.0)  # the extremes always appear
    return osnr, lit, offset


def flat_scenario(
    grid_thz: FloatArray, seed: int, spread_db: float = 3.0, dark_fraction: float = 0.2
) -> tuple[FloatArray, npt.NDArray[np.bool_], FloatArray]:
    """A power-flattened line: OSNR 14-26 dB varying slowly along the band plus
    +/-``spread_db``/2 per channel (adjacent channels within a few dB, as after a
    gain-flattened amplifier), some channels dark, offsets within +/-2 GHz."""
    rng = np.random.default_rng(seed)
    n = grid_thz.size
    x = np.linspace(0.0, 1.0, n)
    osnr = 20.0 + 6.0 * np.sin(2 * math.pi * (x + rng.random())) * 0.5
    osnr = osnr + rng.uniform(-spread_db / 2, spread_db / 2, n)
    lit = rng.random(n) >= dark_fraction
    offset = rng.uniform(-2.0, 2.0, n)
    return osnr, lit, offset


def scenario_line_trace(
    grid_thz: FloatArray,
    spacing_ghz: float,
    seed: int,
    *,
    scenario: Literal["flat", "random"] = "flat",
    rbw_ghz: float,
    symbol_rate_gbd: float,
    roll_off: float = 0.1,
    all_lit: bool = False,
    **wss: float,
) -> SyntheticTrace:
    """A line of :func:`flat_scenario` (``scenario="flat"``) or :func:`random_scenario`
    (``"random"``: OSNR 8-32 dB in random order, neighbours up to 24 dB apart), seeded,
    of one symbol rate and roll-off, at 0.01 nm steps (every slot lit with
    ``all_lit``; ``wss``: :func:`make_trace`'s ``wss_*`` settings)."""
    pick = random_scenario if scenario == "random" else flat_scenario
    osnr, lit, offset = pick(grid_thz, seed)
    if all_lit:
        lit = np.ones(grid_thz.size, dtype=bool)
    return make_trace(
        grid_thz=grid_thz,
        spacing_ghz=spacing_ghz,
        osnr_db=osnr,
        lit=lit,
        offset_ghz=offset,
        rbw_ghz=rbw_ghz,
        step_nm=0.01,
        symbol_rate_gbd=symbol_rate_gbd,
        roll_off=roll_off,
        **wss,  # type: ignore[arg-type]
    )


def flat_line_trace(
    grid_thz: FloatArray,
    spacing_ghz: float,
    seed: int,
    *,
    rbw_ghz: float,
    symbol_rate_gbd: float,
    roll_off: float = 0.1,
    all_lit: bool = False,
    **wss: float,
) -> SyntheticTrace:
    """A line of :func:`flat_scenario` (see :func:`scenario_line_trace`): the in-band
    methods' usual case."""
    return scenario_line_trace(
        grid_thz,
        spacing_ghz,
        seed,
        rbw_ghz=rbw_ghz,
        symbol_rate_gbd=symbol_rate_gbd,
        roll_off=roll_off,
        all_lit=all_lit,
        **wss,  # type: ignore[arg-type]
    )
