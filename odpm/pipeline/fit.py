"""In-band OSNR by fitting a signal shape plus a smooth noise pedestal (the "fit" and
"reference" methods).

Where a channel fills its slot, the ASE floor is never visible on its own, but the
trace still holds it: around channel ``c`` the trace is (in linear units)::

    p(x) = a_c T_c(x) + a_{c-1} T_{c-1}(x) + a_{c+1} T_{c+1}(x) + n0_c + n1_c (x - f_c)

with ``T`` each channel's shape as the trace sees it and the noise linear across the
window from neighbour centre to neighbour centre.  The model is linear in the
amplitudes and the noise, so it is solved by weighted least squares per channel, all
channels at once (batched normal equations).  A tiny ridge on the diagonal (the
"regularised least squares" of Li, Pendock & Evans for OSNR on low-resolution
monitors) keeps missing neighbours at the plan's ends harmless.  Weights are
``1/p``: the trace's noise is mostly multiplicative, and relative residuals keep the
floor from being swamped by the signal peaks.

Shapes:

* ``fit``: a raised cosine (:mod:`odpm.pipeline.shapes`) through a Gaussian RBW, the
  symbol rate taken from the channel's width at half maximum and refined by a small
  search on the fit residual, the roll-off from configuration;
* ``reference``: the channel's own shape from a trace taken at high OSNR (noise
  removed), scaled by a gain (EXFO's spectral-shape methods, US 9,112,604).

OSNR = ``a_c / (N(f_c) x 12.5 GHz)`` with ``N = n0_c / RBW``.  The uncertainty comes from
the covariance of the fit (residual variance times the inverse normal matrix,
inflated for the correlation of points closer than the RBW) propagated to
``10 log10(a_c / n0_c)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from odpm.models import FloatArray
from odpm.pipeline.axis import TraceAxis, half_crossings_ghz
from odpm.pipeline.formulas import OSNR_REFERENCE_BANDWIDTH_GHZ
from odpm.pipeline.shapes import ShapeTable, shape_table, stacked_tables

#: 10 / ln 10: converts a relative standard deviation into dB.
_DB_PER_NEPER = 10.0 / math.log(10.0)
#: Ridge added to the normal matrix, relative to its diagonal.
_RIDGE = 1e-9
#: Points farther from the centre than this fraction of the window are the
#: "outer" region whose mean residual is tested (see fit_raised_cosine).
_INNER_FRACTION = 0.45
#: A mean outer residual beyond this many standard errors rejects the fit.
_MAX_RESIDUAL_Z = 4.0
#: Relative change of the symbol rate whose effect on the OSNR counts as uncertainty.
_SENSITIVITY_STEP = 0.02
#: Roll-off factors tried (the first also measures widths): coherent transceivers
#: use 0.01-0.2 digitally; 0.35 covers older and looser shapes.
DEFAULT_ROLLOFFS = (0.1, 0.05, 0.2, 0.35)
#: Where a missing neighbour (beyond the plan's ends) is put: its shape is zero here.
_FAR_GHZ = 1e5
#: Relative steps of the two rounds of the symbol-rate search (a parabola through the
#: residual at rate x (1 - s, 1, 1 + s), its vertex clipped to 1.5 s).
_RATE_SPANS = (0.04, 0.015)
#: Window points kept per RBW (see fit_raised_cosine).
_POINTS_PER_RBW = 3.0


@dataclass(frozen=True, slots=True)
class FitResult:
    """Per channel ``(N, C)``: fitted signal power (mW), noise PSD at the centre (mW/GHz),
    OSNR and its one-sigma uncertainty (dB), and the symbol rate used (GBd)."""

    signal_mw: FloatArray
    noise_psd_mw_per_ghz: FloatArray
    osnr_db: FloatArray
    uncertainty_db: FloatArray
    symbol_rate_gbd: FloatArray
    #: Peak of the fitted signal in the trace, in trace units (for presence).
    signal_peak: FloatArray
    #: The rate read from the width at half maximum, before the residual search: a fit
    #: whose best rate lands at the edge of the search did not converge.
    width_rate_gbd: FloatArray


def pit_noise_level(axis: TraceAxis, p: npt.NDArray[np.float32]) -> FloatArray:
    """First guess of the noise level in the trace at each centre: the minimum point
    near each midpoint (AQ6370 PIT), interpolated.  Never below the true floor by more
    than the trace's scatter; above it where signals fill the gap (a guess only)."""
    mid = np.take(p, axis.pit_idx, axis=1).min(axis=-1).astype(np.float64)
    t = axis.centre_t
    return np.asarray(mid[:, :-1] * (1 - t) + mid[:, 1:] * t)


@dataclass(frozen=True, slots=True)
class _Fixed:
    """The parts of the weighted normal equations that do not depend on the channel's
    own shape: its neighbours, the noise pedestal and the data (``(N, C, ...)``).
    Each candidate shape then costs a few dot products over the window, not a fit."""

    columns: FloatArray  # (N, C, W, 4) weighted [left, right, 1, slope]
    data: FloatArray  # (N, C, W) weighted y
    #: The fixed block solved once: ``G_ff^-1`` (with the ridge) ``(N, C, 4, 4)``,
    #: ``z = G_ff^-1 h_f`` ``(N, C, 4)`` and the RSS of the fixed columns alone ``(N, C)``.
    inv: FloatArray
    z: FloatArray
    rss_fixed: FloatArray

    @classmethod
    def build(cls, y: FloatArray, w: FloatArray, columns: FloatArray) -> _Fixed:
        a = columns * w[..., None]
        b = y * w
        gram = np.einsum("ncwp,ncwq->ncpq", a, a)
        rhs = np.einsum("ncwp,ncw->ncp", a, b)
        diag = np.einsum("ncpp->ncp", gram)
        diag += np.where(diag > 0, _RIDGE * diag, 1.0)
        inv = np.asarray(np.linalg.inv(gram), dtype=np.float64)
        z = np.einsum("ncpq,ncq->ncp", inv, rhs)
        return cls(
            columns=a,
            data=b,
            inv=inv,
            z=np.asarray(z),
            rss_fixed=np.asarray(np.einsum("ncw,ncw->nc", b, b) - np.einsum("ncp,ncp->nc", z, rhs)),
        )

    def _reduced(self) -> tuple[FloatArray, FloatArray, FloatArray]:
        return self.inv, self.z, self.rss_fixed

    def rss(self, own: FloatArray, w: FloatArray) -> FloatArray:
        """The weighted RSS with ``own`` added, by the Schur complement of the fixed
        block: ``RSS_f - (h_o - g_of . z)^2 / (g_oo - g_of . G_ff^-1 g_of)``.  A few
        dot products per candidate shape instead of a 5 x 5 solve."""
        inv, z, rss_fixed = self._reduced()
        a = own * w
        g_oo = np.einsum("ncw,ncw->nc", a, a)
        g_of = np.einsum("ncw,ncwp->ncp", a, self.columns)
        h_o = np.einsum("ncw,ncw->nc", a, self.data)
        schur = g_oo * (1 + _RIDGE) - np.einsum("ncp,ncpq,ncq->nc", g_of, inv, g_of)
        gain = h_o - np.einsum("ncp,ncp->nc", g_of, z)
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.where(schur > 0, rss_fixed - gain * gain / schur, rss_fixed)
        return np.asarray(np.maximum(out, 0.0))

    def solve(self, own: FloatArray, w: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Least squares with ``own`` (``(N, C, W)``, unweighted) as the first column,
        by the same block elimination as :meth:`rss`.  Returns ``(coef (N, C, 5),
        inverse normal matrix (N, C, 5, 5), weighted RSS (N, C))`` with the entries the
        OSNR needs filled (own amplitude 0 and noise level 3, their (co)variances)."""
        inv_f, z, rss_fixed = self._reduced()
        a = own * w
        g_oo = np.einsum("ncw,ncw->nc", a, a)
        g_of = np.einsum("ncw,ncwp->ncp", a, self.columns)
        h_o = np.einsum("ncw,ncw->nc", a, self.data)
        m = np.einsum("ncpq,ncq->ncp", inv_f, g_of)  # G_ff^-1 g_of
        schur = g_oo * (1 + _RIDGE) - np.einsum("ncp,ncp->nc", g_of, m)
        gain = h_o - np.einsum("ncp,ncp->nc", g_of, z)
        with np.errstate(divide="ignore", invalid="ignore"):
            own_coef = gain / schur
            n, c = own_coef.shape
            coef = np.zeros((n, c, 5))
            coef[..., 0] = own_coef
            coef[..., 1:] = z - m * own_coef[..., None]
            inv = np.zeros((n, c, 5, 5))
            inv[..., 0, 0] = 1.0 / schur
            inv[..., 0, 3] = inv[..., 3, 0] = -m[..., 2] / schur
            inv[..., 3, 3] = inv_f[..., 2, 2] + m[..., 2] ** 2 / schur
            rss = np.maximum(rss_fixed - gain * own_coef, 0.0)
        return coef, inv, np.asarray(rss)


def _osnr(
    coef: FloatArray,
    inv: FloatArray,
    rss: FloatArray,
    dof: FloatArray,
    correlation: float,
    rbw_ghz: float,
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Signal (mW), noise PSD (mW/GHz), OSNR and its uncertainty (dB) from a fit."""
    sig, n0 = coef[..., 0], coef[..., 3]
    var = rss / np.maximum(dof, 1.0) * correlation
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = (
            inv[..., 0, 0] / sig**2 + inv[..., 3, 3] / n0**2 - 2 * inv[..., 0, 3] / (sig * n0)
        ) * var
        unc = _DB_PER_NEPER * np.sqrt(np.maximum(rel, 0.0))
        psd = n0 / rbw_ghz
        osnr = 10 * np.log10(sig / (psd * OSNR_REFERENCE_BANDWIDTH_GHZ))
    ok = (sig > 0) & (n0 > 0)
    return (
        sig,
        psd,
        np.asarray(np.where(ok, osnr, np.nan)),
        np.asarray(np.where(ok, unc, np.nan)),
    )


def _shapes(
    table: ShapeTable, rows: npt.NDArray[np.intp], u: FloatArray, centre_ghz: FloatArray
) -> FloatArray:
    """Shapes ``(N, C, W)`` of rows ``(N, C)`` at window offsets ``u`` ``(C, W)`` from the
    grid centre, each shifted to its channel's measured centre ``(N, C)``."""
    return table.evaluate(rows[..., None], u[None, :, :] - centre_ghz[..., None])


def _neighbours(x: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Each channel's lower and upper neighbour's value along axis 1 (zero at the ends)."""
    z = np.zeros_like(x[:, :1])
    return np.concatenate((z, x[:, :-1]), axis=1), np.concatenate((x[:, 1:], z), axis=1)


def fit_raised_cosine(
    axis: TraceAxis,
    p: npt.NDArray[np.float32],
    rbw_ghz: float,
    rolloffs: tuple[float, ...] = DEFAULT_ROLLOFFS,
    noise_level: FloatArray | None = None,
) -> FitResult:
    """Fit every channel of ``N`` linear traces ``p`` ``(N, K')`` (see module docstring).

    ``noise_level`` (trace units at each centre, ``(N, C)``) sets the half-maximum level
    used to measure widths; the pit noise is used when it is None.
    """
    table = shape_table(float(rbw_ghz), float(rolloffs[0]))
    stack = stacked_tables(float(rbw_ghz), tuple(float(b) for b in rolloffs))
    n_rates = table.symbol_rate_gbd.size
    step_ghz = float(np.median(np.diff(axis.frequency_ghz)))
    # Points closer than a fraction of the RBW carry little new information (the
    # filter smooths the trace over its width): keep one every RBW / _POINTS_PER_RBW.
    stride = max(1, int(rbw_ghz / _POINTS_PER_RBW / step_ghz))
    nb = axis.neighbourhood(stride)
    if noise_level is None:
        noise_level = pit_noise_level(axis, p)

    # Width at half maximum (above the noise) -> symbol rate; centre from the crossings.
    g = np.take(p, axis.slots.idx, axis=1)[..., 1:-1]
    peak = g.max(axis=-1).astype(np.float64)
    rise, fall = half_crossings_ghz(g, (peak + noise_level) / 2, axis.slot_offset_ghz)
    centre = (rise + fall) / 2
    rate0 = table.rate_from_fwhm(fall - rise)

    y = np.take(p, nb.idx, axis=1).astype(np.float64)  # (N, C, W)
    w = np.where(nb.valid[None], 1.0 / np.maximum(y, 1e-30), 0.0)
    slope = np.broadcast_to(nb.offset_ghz / nb.reach_ghz[:, None], y.shape)
    # Neighbour shapes on this channel's window: shift by the centre-to-centre distance.
    gaps = np.diff(axis.channel_ghz)
    gap_lo = np.concatenate(([_FAR_GHZ], gaps))
    gap_hi = np.concatenate((gaps, [_FAR_GHZ]))
    cen_lo, cen_hi = _neighbours(centre)

    def build_fixed(rows: npt.NDArray[np.intp]) -> _Fixed:
        """The fixed columns with the neighbours' shapes of stacked-table ``rows``."""
        row_lo, row_hi = (r.astype(np.intp) for r in _neighbours(rows.astype(np.float64)))
        left = stack.evaluate(
            row_lo[..., None], nb.offset_ghz[None] + gap_lo[None, :, None] - cen_lo[..., None]
        )
        right = stack.evaluate(
            row_hi[..., None], nb.offset_ghz[None] - gap_hi[None, :, None] - cen_hi[..., None]
        )
        return _Fixed.build(y, w, np.stack((left, right, np.ones_like(left), slope), axis=-1))

    fixed = build_fixed(table.rate_index(rate0))
    dof = nb.valid.sum(axis=-1)[None, :] - 5.0
    correlation = max(1.0, rbw_ghz * _POINTS_PER_RBW / (2 * step_ghz * stride))

    def own(rate: FloatArray, beta: npt.NDArray[np.intp]) -> FloatArray:
        return _shapes(stack, table.rate_index(rate) + beta * n_rates, nb.offset_ghz, centre)

    def solve(
        rate: FloatArray, beta: npt.NDArray[np.intp]
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        return fixed.solve(own(rate, beta), w)

    # The rate: rounds of a parabola through the residual at three rates (the
    # residual is close to quadratic near its minimum), each vertex clipped to 1.5
    # spans; the roll-off: the candidate with the smallest residual at that rate.
    # Rate and roll-off trade against each other a little, so the rate is searched
    # again at the chosen roll-off.
    def refine(rate: FloatArray, beta: npt.NDArray[np.intp], span: float) -> FloatArray:
        r_lo, r_mid, r_hi = (fixed.rss(own(rate * (1 + k * span), beta), w) for k in (-1, 0, 1))
        curve = r_lo + r_hi - 2 * r_mid
        with np.errstate(divide="ignore", invalid="ignore"):
            vertex = np.where(curve > 0, (r_lo - r_hi) / (2 * curve), 0.0)
        return np.asarray(rate * (1 + np.clip(np.nan_to_num(vertex), -1.5, 1.5) * span))

    def choose_rolloff(rate: FloatArray) -> npt.NDArray[np.intp]:
        best_rss = np.full(rate.shape, np.inf)
        beta = np.zeros(rate.shape, dtype=np.intp)
        for b in range(len(rolloffs)):
            rss_b = fixed.rss(own(rate, np.full(rate.shape, b, dtype=np.intp)), w)
            better = rss_b < best_rss
            best_rss = np.where(better, rss_b, best_rss)
            beta = np.where(better, b, beta)
        return beta

    beta = np.zeros(rate0.shape, dtype=np.intp)
    rate = rate0
    for span in _RATE_SPANS:
        rate = refine(rate, beta, span)
    beta = choose_rolloff(rate)
    rate = refine(rate, beta, _RATE_SPANS[-1])
    # Second pass: the neighbours' shapes with their own fitted rate and roll-off; a
    # narrower roll-off at a slightly higher rate mimics a wider one, so each roll-off
    # gets its own rate before they are compared.
    fixed = build_fixed(table.rate_index(rate) + beta * n_rates)
    best_rss = np.full(rate.shape, np.inf)
    best_rate = rate
    for b in range(len(rolloffs)):
        beta_b = np.full(rate.shape, b, dtype=np.intp)
        rate_b = refine(refine(rate, beta_b, _RATE_SPANS[0]), beta_b, _RATE_SPANS[-1])
        rss_b = fixed.rss(own(rate_b, beta_b), w)
        better = rss_b < best_rss
        best_rss = np.where(better, rss_b, best_rss)
        beta = np.where(better, b, beta)
        best_rate = np.where(better, rate_b, best_rate)
    rate = best_rate

    coef, inv, rss = solve(rate, beta)
    sig, psd, osnr, unc = _osnr(coef, inv, rss, dof, correlation, rbw_ghz)
    # Shape sensitivity: how far the OSNR moves when the rate moves by
    # _SENSITIVITY_STEP.  Where the floor is hidden (wide channels through a wide RBW)
    # a small change of shape trades signal for noise and this term grows, so the fit
    # says it does not know rather than report a confident number.
    for step in (-_SENSITIVITY_STEP, _SENSITIVITY_STEP):
        c2, i2, r2 = solve(rate * (1 + step), beta)
        moved = _osnr(c2, i2, r2, dof, correlation, rbw_ghz)[2]
        unc = np.sqrt(unc**2 + (moved - osnr) ** 2)
    # Shape of the residual: noise that is not smooth across the window (ASE carved
    # between channels by ROADM filters) leaves the trace systematically below the
    # model near the midpoints.  Compare the mean residual there with what the
    # residual scatter allows; a channel that fails has no credible fit.
    a_own = own(rate, beta) * w
    resid = (
        fixed.data
        - a_own * coef[..., :1]
        - np.einsum("ncwp,ncp->ncw", fixed.columns, coef[..., 1:])
    )
    outer = (np.abs(nb.offset_ghz) > _INNER_FRACTION * nb.reach_ghz[:, None]) & nb.valid
    n_outer = outer.sum(axis=-1) / correlation
    sigma = np.sqrt(rss / np.maximum(dof, 1.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_outer = np.where(outer[None], resid, 0.0).sum(axis=-1) / outer.sum(axis=-1)
        z = np.abs(mean_outer) / (sigma / np.sqrt(np.maximum(n_outer, 1.0)))
    unc = np.where(z > _MAX_RESIDUAL_Z, np.inf, unc)
    rows = table.rate_index(rate)
    return FitResult(
        signal_mw=sig,
        noise_psd_mw_per_ghz=psd,
        osnr_db=osnr,
        uncertainty_db=unc,
        symbol_rate_gbd=table.symbol_rate_gbd[rows],
        signal_peak=sig * stack.values[rows + beta * n_rates, 0],
        width_rate_gbd=rate0,
    )
