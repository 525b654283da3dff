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
from odpm.pipeline.axis import TraceAxis
from odpm.pipeline.formulas import OSNR_REFERENCE_BANDWIDTH_GHZ, IntArray
from odpm.pipeline.shapes import ShapeTable, shape_table

#: 10 / ln 10: converts a relative standard deviation into dB.
_DB_PER_NEPER = 10.0 / math.log(10.0)
#: Ridge added to the normal matrix, relative to its diagonal.
_RIDGE = 1e-9
#: Relative change of the symbol rate whose effect on the OSNR counts as uncertainty.
_SENSITIVITY_STEP = 0.02
#: Roll-off factors tried (the first also measures widths): coherent transceivers
#: use 0.01-0.2 digitally; 0.35 covers older and looser shapes.
DEFAULT_ROLLOFFS = (0.1, 0.05, 0.2, 0.35)
#: Where a missing neighbour (beyond the plan's ends) is put: its shape is zero here.
_FAR_GHZ = 1e5
#: Relative steps tried around the width-based symbol rate estimate.
_RATE_STEPS = np.array([-0.08, -0.05, -0.03, -0.015, 0.0, 0.015, 0.03, 0.05, 0.08])


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


def half_crossings_ghz(
    g: npt.NDArray[np.float32], level: FloatArray, offset_ghz: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Outermost crossings of ``level`` in each slot window ``g`` (``(N, C, L)``, offsets
    ``(C, L)`` from the centre), interpolated linearly: (rising edge, falling edge)."""
    n, c, length = g.shape
    above = g >= level.astype(g.dtype)[..., None]
    first = above.argmax(axis=-1)
    last = length - 1 - above[..., ::-1].argmax(axis=-1)
    g_rows = g.reshape(n * c, length)
    row = np.arange(n * c).reshape(n, c)
    chan = np.arange(c)

    def at(i: IntArray) -> tuple[FloatArray, FloatArray]:
        return g_rows[row, i].astype(np.float64), offset_ghz[chan, i]

    (g_b, f_b), (g_f, f_f) = at(np.maximum(first - 1, 0)), at(first)
    (g_l, f_l), (g_a, f_a) = at(last), at(np.minimum(last + 1, length - 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        rise = np.where(g_f > g_b, f_b + (level - g_b) / (g_f - g_b) * (f_f - f_b), f_f)
        fall = np.where(g_l > g_a, f_l + (g_l - level) / (g_l - g_a) * (f_a - f_l), f_l)
    return np.asarray(rise), np.asarray(fall)


def _solve(
    y: FloatArray, w: FloatArray, columns: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Weighted least squares per (trace, channel): ``columns`` ``(N, C, W, P)``.

    Returns ``(coef (N, C, P), inverse normal matrix (N, C, P, P), weighted RSS (N, C))``.
    """
    a = columns * w[..., None]
    b = y * w
    gram = np.einsum("ncwp,ncwq->ncpq", a, a)
    rhs = np.einsum("ncwp,ncw->ncp", a, b)
    diag = np.einsum("ncpp->ncp", gram)
    ridge = _RIDGE * diag.max(axis=-1, keepdims=True) + 1e-300
    gram = gram + np.eye(gram.shape[-1]) * ridge[..., None]
    inv = np.linalg.inv(gram)
    coef = np.einsum("ncpq,ncq->ncp", inv, rhs)
    resid = b - np.einsum("ncwp,ncp->ncw", a, coef)
    return coef, inv, np.asarray((resid * resid).sum(axis=-1))


def _design(own: FloatArray, left: FloatArray, right: FloatArray, slope: FloatArray) -> FloatArray:
    """Columns ``[own shape, lower neighbour, upper neighbour, 1, slope]``."""
    return np.stack((own, left, right, np.ones_like(own), slope), axis=-1)


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
    nb = axis.neighbourhood
    n = p.shape[0]
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
    rows0 = table.rate_index(rate0)
    row_lo, row_hi = (r.astype(np.intp) for r in _neighbours(rows0.astype(np.float64)))
    left = table.evaluate(
        row_lo[..., None], nb.offset_ghz[None] + gap_lo[None, :, None] - cen_lo[..., None]
    )
    right = table.evaluate(
        row_hi[..., None], nb.offset_ghz[None] - gap_hi[None, :, None] - cen_hi[..., None]
    )

    # Refine the own rate by the weighted residual over a few relative steps.
    best_rss = np.full((n, axis.n_channels), np.inf)
    best_rows = rows0
    for step in _RATE_STEPS:
        rows = table.rate_index(rate0 * (1 + step))
        own = _shapes(table, rows, nb.offset_ghz, centre)
        _, _, rss = _solve(y, w, _design(own, left, right, slope))
        better = rss < best_rss
        best_rss = np.where(better, rss, best_rss)
        best_rows = np.where(better, rows, best_rows)

    dof = nb.valid.sum(axis=-1)[None, :] - 5.0
    step_ghz = float(np.median(np.diff(axis.frequency_ghz)))
    correlation = max(1.0, rbw_ghz / step_ghz)
    best_rate = table.symbol_rate_gbd[best_rows]

    def fit(shape: ShapeTable, rate: FloatArray) -> tuple[FloatArray, ...]:
        own = _shapes(shape, shape.rate_index(rate), nb.offset_ghz, centre)
        coef, inv, rss = _solve(y, w, _design(own, left, right, slope))
        return (*_osnr(coef, inv, rss, dof, correlation, rbw_ghz), rss)

    # The roll-off: the candidate with the smallest residual at the best rate.  Then
    # the shape sensitivity: how far the OSNR moves when the rate moves by
    # _SENSITIVITY_STEP.  Where the floor is hidden (wide channels through a wide RBW)
    # a small change of shape trades signal for noise and this term grows, so the fit
    # says it does not know rather than report a confident number.
    chosen: tuple[FloatArray, ...] | None = None
    chosen_beta = np.full(best_rate.shape, rolloffs[0])
    for beta in rolloffs:
        shape = shape_table(float(rbw_ghz), float(beta))
        sig_b, psd_b, osnr_b, unc_b, rss_b = fit(shape, best_rate)
        for step in (-_SENSITIVITY_STEP, _SENSITIVITY_STEP):
            moved = fit(shape, best_rate * (1 + step))[2]
            unc_b = np.sqrt(unc_b**2 + (moved - osnr_b) ** 2)
        here = (sig_b, psd_b, osnr_b, unc_b, rss_b)
        if chosen is None:
            chosen = here
            continue
        better = rss_b < chosen[4]
        chosen = tuple(np.where(better, new, old) for new, old in zip(here, chosen, strict=True))
        chosen_beta = np.where(better, beta, chosen_beta)
    assert chosen is not None
    sig, psd, osnr, unc, _ = chosen
    peak_shape = np.zeros_like(best_rate)
    for beta in rolloffs:
        values = shape_table(float(rbw_ghz), float(beta)).values
        peak_shape = np.where(chosen_beta == beta, values[best_rows, 0], peak_shape)
    return FitResult(
        signal_mw=sig,
        noise_psd_mw_per_ghz=psd,
        osnr_db=osnr,
        uncertainty_db=unc,
        symbol_rate_gbd=table.symbol_rate_gbd[best_rows],
        signal_peak=sig * peak_shape,
        width_rate_gbd=rate0,
    )
