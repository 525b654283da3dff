"""In-band OSNR by fitting a signal shape plus a smooth noise pedestal (the "fit"
method).

Where a channel fills its slot, the ASE floor is never visible on its own, but the
trace still holds it: around channel ``c`` (from its lower to its upper neighbour's
centre) the trace is, in linear units::

    p(x) = a_c T(x - f_c; R_c, b_c) + a_{c-1} T_{c-1}(x) + a_{c+1} T_{c+1}(x)
           + n0_c + n1_c (x - f_c)

with ``T`` a raised cosine of symbol rate ``R``, roll-off ``b`` and centre ``f``
through a Gaussian RBW (:mod:`odpm.pipeline.shapes`), and the noise linear across the
window.  The model is linear in the amplitudes and the noise and nonlinear in
``(R, f, b)``, which are fitted by Gauss-Newton with the linear part solved exactly
at each step: the design matrix holds the shapes, the pedestal and the derivatives
of the own shape in rate, centre and roll-off (their coefficients are ``a x step``).
The neighbours' rate, centre and roll-off derivatives are columns too: a neighbour's
shape still off is absorbed in this window rather than bent into this channel's
noise.  Without them the channels converge as a chain (each one behind its
neighbours) and stop ~0.5 % short on the rate, which through a 12.5 GHz RBW is
~0.4 dB of OSNR on an exact model.  Every channel of every trace is fitted at once
(a batched ``(N, C, 15, W)`` design, the 14 columns and the weighted trace; its
normal equations scaled to a unit diagonal, with a tiny ridge: the "regularised
least squares" of Li, Pendock & Evans for OSNR on low-resolution monitors).
Weights are ``1/p``: the trace's noise is mostly multiplicative, and relative
residuals keep the floor from being swamped by the signal peaks.

Start: the rate from the width at half maximum (at roll-off 0.1), the centre from the
crossings; three Gauss-Newton steps (each step clipped to 10 % of the rate, 1 GHz,
0.1 of roll-off).  The rate and roll-off are continuous (bilinear look-ups in rate
and between tabulated roll-offs): rounding to a 0.25 GBd table row moves a 32 GBd
channel's edges by ~0.1 GHz, a ~1 % mismatch through a 12.5 GHz RBW that the old
search turned into 0.5-2.8 dB of error.

OSNR = ``a_c / (N(f_c) x 12.5 GHz)`` with ``N = n0_c / RBW``.  The uncertainty is the
linearised joint one: the covariance of the final fit (residual variance times the
inverse normal matrix, inflated for the correlation of neighbouring points as the
residuals show it: see ``_residual_inflation``),
*with* the derivative columns kept, so what the rate, centre and roll-off of the
channel and its neighbours are free to trade against the noise is in it, propagated
to ``10 log10(a_c / n0_c)``.  A fit is not credible (infinite uncertainty) when the
final solve still asks for a step (rate > 0.2 %, centre > 0.1 GHz, roll-off > 0.01),
when the rate is pinned at the table's end, or when the residual's mean in the outer
part of the window is off (ASE carved by ROADM filters, see below).

Presence evidence (``signal_peak``): the fitted peak at the amplitude's lower two-sigma
bound; zero when the fit neither converged nor stayed where the trace's widths put it
(a dark slot's own column has nothing to fit and wanders).

Measured on the first-principles generator (tests/support, 0.01 nm steps, flat
OSNR 14-26 dB, a fifth of the slots dark, two to six seeds per case): share of lit
channels within 0.5 dB, worst reported error.

* 28-32 GBd on 50 GHz: 100 %, 0.14 dB at 6.25 GHz RBW; 98-100 %, 0.09 dB at 12.5 GHz
  (the old fit: 0-40 % got a number at 12.5 GHz);
* 60-64 GBd on 75 GHz: 100 %, 0.16 dB at 6.25 GHz (old: 3-15 %); at 12.5 GHz 60 GBd
  97-100 %, 0.25 dB, and 64 GBd (70 GHz of signal in 75) 47-62 %, the rest flagged;
* 120-130 GBd on 150 GHz: 100 %, 0.44 dB at 6.25 GHz; at 12.5 GHz 130 GBd 96-100 %,
  120 GBd 15-100 % (worst 0.74 dB), the rest flagged;
* 64 GBd on 50 GHz (overfilled): no number, no dark slot read present (old: 8);
* no case reports an OSNR off by more than 1 dB, no lit channel is called dark
  (overfilled slots, ``(1 + roll-off) x rate > width``, are kept lit by the slot's
  centre standing above its edges, not by the fit: see
  :data:`~odpm.pipeline.formulas.CENTRE_RISE_DB`; rate above the spacing, 64 GBd
  on 50 GHz, still reads dark).

"Flagged" includes whole traces whose fits the single-trace carving evidence drops
(:mod:`odpm.pipeline.carving`, :mod:`odpm.pipeline.select`): with
``line_filtering = "auto"`` a trace that shows carving, or shows nowhere that its
ASE is uncarved (every slot lit by wide channels), keeps no fitted OSNR.

Speed (bench/pipeline.py, 17,000 points, 80 channels, 2.5 GHz RBW, one core): 5.76 ms
on a quiet machine before the changes below.  After them, timed against that code
alternately call by call in one process (thread CPU time, medians of 300 calls each,
load 2.5-4.4 on 2 CPUs): old 13.0 / 11.0 ms, new 9.0 / 7.5 ms, 1.45-1.47 x, so about
4 ms on a quiet machine (measured since, load 0.5-0.7: 3.85-3.90 ms thread CPU, 3.87-3.96 ms
wall, median of 5 rounds, two runs).  Nothing that is
computed changed beyond rounding (OSNRs of credible fits within 2e-6 dB on the
generator's traces, the same fits credible).  What made the difference:

* the three shapes of every window (own, lower and upper neighbour's) in one look-up,
  written in place into the design, whose shape columns come first so that the
  look-up's four outputs (value, rate, offset and roll-off derivatives) are four
  strided views of it, weighted in the look-up's last products (no stacking, no
  separate weighting pass);
* the weighted trace as the design's last row: one product gives the normal matrix
  and its right-hand side;
* the final solve asks for the three columns of the inverse it uses (a full
  ``np.linalg.inv`` cost more than every solve of the iterations together);
* what depends only on the axis (median step, stride, window offsets, degrees of
  freedom, outer masks) kept per axis and RBW (:func:`_geometry`);
* np.clip / np.nan_to_num replaced by the ufuncs on the small per-channel arrays.

Where the time goes now (thread CPU time): the four designs ~45 % (eight gathers from
the table and ~40 element-wise passes over ``N x C x 3 x W`` points each), the four
batched 14 x 14 solves and their products ~35 % (numpy calls LAPACK and BLAS once per
channel), the start from the widths and the statistics ~20 %.  Tried and dropped:
float32 for the look-up's arithmetic (12 % of the look-up, derivative columns then
good to ~1e-6 only), the table with the roll-offs adjacent in memory, the look-up in
chunks small enough for L2 (both slower), a vectorised Gaussian elimination instead of
LAPACK (3 x slower).  First scan (tables built): 0.67-1.6 s before the Gauss-Newton
fit, 0.15-0.33 s now (the tables stop at the plan's highest plausible rate, the FFT
is half the size).
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from odpm.models import FloatArray
from odpm.pipeline.axis import Neighbourhood, TraceAxis, channel_crossings_ghz
from odpm.pipeline.formulas import OSNR_REFERENCE_BANDWIDTH_GHZ
from odpm.pipeline.shapes import rate_limit_gbd, shape_table

#: 10 / ln 10: converts a relative standard deviation into dB.
_DB_PER_NEPER = 10.0 / math.log(10.0)
#: Ridge added to the (column-scaled, unit-diagonal) normal matrix.
_RIDGE = 1e-9
#: Points farther from the centre than this fraction of the window are the
#: "outer" region whose mean residual is tested (see fit_raised_cosine).
_INNER_FRACTION = 0.45
#: A mean outer residual beyond this many standard errors rejects the fit.
_MAX_RESIDUAL_Z = 4.0
#: Roll-off factors tabulated; the fitted roll-off is continuous between the first and
#: the last (shapes blended linearly between neighbouring tables).  Coherent
#: transceivers use 0.01-0.2 digitally; 0.35 covers older and looser shapes.
DEFAULT_ROLLOFFS = (0.02, 0.06, 0.1, 0.15, 0.2, 0.27, 0.35)
#: The roll-off the fit starts from.
_START_ROLLOFF = 0.1
#: Where a missing neighbour (beyond the plan's ends) is put: its shape is zero here.
_FAR_GHZ = 1e5
#: A slot's highest point in its central half this many times its lowest point is a
#: channel of its own (3 dB; a dark slot's flat ASE core stands ~1x, a channel at
#: 12 dB OSNR beside a neighbour 20 dB stronger ~3x): see fit_raised_cosine's start.
_OWN_PEAK_RISE = 2.0
#: Gauss-Newton steps on (rate, centre) after the start from the widths.
_ITERATIONS = 3
#: Largest step per iteration: relative for the rate, absolute (GHz) for the centre,
#: absolute for the roll-off.
_MAX_RATE_STEP = 0.1
_MAX_CENTRE_STEP_GHZ = 1.0
_MAX_ROLLOFF_STEP = 0.1
#: A remaining step larger than these (relative rate, centre in GHz, roll-off) means
#: the fit did not converge: a shape still moving moves the noise with it.
_CONVERGED_RATE_STEP = 0.002
_CONVERGED_CENTRE_STEP_GHZ = 0.1
_CONVERGED_ROLLOFF_STEP = 0.01
#: A roll-off step within its own one-sigma uncertainty, up to the largest step of
#: one iteration, is noise rather than a fit still moving (its trade against the
#: noise is in the uncertainty, the roll-off's derivative being a column of the
#: final fit).  Without it a third to a half of 28-32 GBd channels of roll-off
#: 0.01-0.05 through a 12.5 GHz RBW got no number at 18 dB OSNR on the simulator,
#: though their fits were within 0.4 dB.
_NOISY_ROLLOFF_STEP = _MAX_ROLLOFF_STEP
#: Relative error of the shape model, a floor under the residual variance.
_MODEL_ERROR = 3e-4
#: Least inflation of the residual variance (see _residual_inflation).
_MIN_INFLATION = 3.0
#: How far (relative) an unconverged fit's rate may drift from the width's and still
#: count for presence.
_PRESENCE_RATE_DRIFT = 0.1
#: Window points kept per RBW, and at least this many per window (see
#: fit_raised_cosine).
_POINTS_PER_RBW = 1.5
_MIN_POINTS = 48
#: Columns of the design matrix: the own and the neighbours' shapes, then (own,
#: lower, upper neighbour's) the derivatives in rate, centre and roll-off, then the
#: noise pedestal.  The twelve shape columns come first and in this order so that one
#: look-up of the three shapes writes them as one block (see fit_raised_cosine).
_OWN, _LEFT, _RIGHT = range(3)
_D_RATE, _D_CENTRE, _D_ROLLOFF = 3, 6, 9
_LEVEL, _SLOPE = 12, 13
_N_SHAPE_COLUMNS = 12
_N_COLUMNS = 14
#: The columns of the inverse normal matrix the uncertainties need (amplitude, noise
#: level, roll-off; see fit_raised_cosine).
_INVERSE_COLUMNS = (_OWN, _LEVEL, _D_ROLLOFF)
#: The ridge, on the diagonal.
_RIDGE_MATRIX = np.eye(_N_COLUMNS) * _RIDGE
#: Their unit vectors, the right-hand sides that solve for them.
_UNIT_COLUMNS = np.eye(_N_COLUMNS)[:, _INVERSE_COLUMNS]

#: A shape's value and its derivatives in rate, offset and roll-off.
_Shapes = tuple[FloatArray, FloatArray, FloatArray, FloatArray]


@dataclass(frozen=True, slots=True)
class FitResult:
    """Per channel ``(N, C)``: fitted signal power (mW), noise PSD at the centre (mW/GHz),
    OSNR and its one-sigma uncertainty (dB), and the symbol rate used (GBd)."""

    signal_mw: FloatArray
    noise_psd_mw_per_ghz: FloatArray
    osnr_db: FloatArray
    uncertainty_db: FloatArray
    symbol_rate_gbd: FloatArray
    #: Peak of the fitted signal in the trace, in trace units, at its lower two-sigma
    #: bound, zero where the fit did not converge (for presence).
    signal_peak: FloatArray
    #: The rate read from the width at half maximum, before the residual search: a fit
    #: whose best rate lands at the edge of the search did not converge.
    width_rate_gbd: FloatArray
    #: The fitted roll-off.
    rolloff: FloatArray


def pit_noise_level(axis: TraceAxis, p: npt.NDArray[np.float32]) -> FloatArray:
    """First guess of the noise level in the trace at each centre: the minimum point
    near each midpoint (AQ6370 PIT), interpolated.  Never below the true floor by more
    than the trace's scatter; above it where signals fill the gap (a guess only)."""
    mid = np.take(p, axis.pit_idx, axis=1).min(axis=-1).astype(np.float64)
    t = axis.centre_t
    return np.asarray(mid[:, :-1] * (1 - t) + mid[:, 1:] * t)


def _clip(x: FloatArray, lo: npt.ArrayLike, hi: npt.ArrayLike) -> FloatArray:
    """``np.clip`` (NaN stays NaN) as the two ufuncs: on the fit's ``(N, C)`` arrays
    np.clip's Python wrapper costs several times the arithmetic, and the Gauss-Newton
    loop clips a dozen of them."""
    return np.asarray(np.minimum(np.maximum(x, lo), hi))


def _with_neighbours(x: FloatArray) -> FloatArray:
    """Each channel's value beside its lower and upper neighbour's, ``(..., C, 3)``
    (zero for the neighbours beyond the plan's ends), in the order of the design's
    shape columns (_OWN, _LEFT, _RIGHT)."""
    out = np.zeros((*x.shape, 3))
    out[..., 0] = x
    out[..., 1:, 1] = x[..., :-1]
    out[..., :-1, 2] = x[..., 1:]
    return out


def _residual_inflation(resid: FloatArray, rss: FloatArray, most: float) -> FloatArray:
    """How much the residual variance must be inflated for the correlation of
    neighbouring points, from the residuals themselves, one figure per trace ``(N, 1)``.

    The lag-one autocorrelation ``rho`` of the weighted residuals ``(N, C, W)`` (zero
    at invalid points), pooled over every window of the trace (``rss``: ``(N, C)``),
    gives the AR(1) variance inflation ``(1 + rho) / (1 - rho)`` (Bartlett 1946; e.g.
    Box, Jenkins & Reinsel, *Time Series Analysis*, 2.1.6), kept between
    ``_MIN_INFLATION`` and ``most`` (the bound from the RBW: points within one RBW
    see the same light).  Assuming ``most`` for white reading noise overstated the
    simulator's uncertainties ~2.7 x (12.5 GHz RBW, 1.25 GHz steps: 7.5 x the
    variance): 28-32 GBd channels through 12.5 GHz at 18 dB OSNR, single scan, got
    an OSNR within 0.5 dB for only 78-81 % of them though the fit's typical error
    was 0.1 dB.  The least inflation, 3, is a margin rather than physics: white
    noise alone gives 1, but the fit reports a number only where its uncertainty is
    small, and that selection favours fits whose residual happened to undershoot;
    at 1-2 the simulator at 20-32 dB OSNR had channels reported 1.1-1.2 dB off
    (six seeds, OSNR 16-32 dB, averaging 1-64), at 3 none beyond 0.7 dB."""
    lagged = np.einsum("ncw,ncw->n", resid[..., :-1], resid[..., 1:])
    with np.errstate(divide="ignore", invalid="ignore"):
        # fmax/fmin as np.clip(np.nan_to_num(...)): NaN to 0, +-inf to the bounds.
        rho = np.fmin(np.fmax(lagged / rss.sum(axis=-1), 0.0), 0.999)
    inflation = np.minimum(np.maximum((1 + rho) / (1 - rho), min(_MIN_INFLATION, most)), most)
    return np.asarray(inflation[:, None])


@dataclass(frozen=True, slots=True)
class _Geometry:
    """What the fit needs of an axis at one RBW and set of roll-offs: it does not
    change from scan to scan, so it is built once per axis (:func:`_geometry`)."""

    #: The shape table's highest rate (the table itself stays in shape_table's cache,
    #: so that this cache does not keep tables alive beyond it).
    max_rate_gbd: float
    #: The tabulated roll-offs, and which one the fit starts from.
    betas: FloatArray
    start: int
    #: Each channel's window (every ``stride``-th point; see fit_raised_cosine).
    nb: Neighbourhood
    #: Offsets of the window's points from the own shape's and the lower and upper
    #: neighbours' grid centres, ``(1, C, 3, W)`` (a missing neighbour beyond the
    #: plan's ends far away, where its shape is zero).
    grid_u: FloatArray
    #: The pedestal's slope column (unweighted), ``(1, C, W)``.
    slope: FloatArray
    #: Degrees of freedom of each window's fit, ``(1, C)``.
    dof: FloatArray
    #: How many neighbouring points see the same light (see fit_raised_cosine).
    correlation: float
    #: The outer part of each window (its residual's mean is tested), ``(C, W)``,
    #: its points, and what they count for (over ``correlation``).
    outer: npt.NDArray[np.bool_]
    outer_points: FloatArray
    n_outer: FloatArray


#: Geometries by axis (kept while the axis lives), then by (RBW, roll-offs).
_GEOMETRIES: weakref.WeakKeyDictionary[
    TraceAxis, dict[tuple[float, tuple[float, ...]], _Geometry]
] = weakref.WeakKeyDictionary()
#: Geometries kept per axis (a few RBWs).
_GEOMETRIES_PER_AXIS = 8


def _geometry(axis: TraceAxis, rbw_ghz: float, rolloffs: tuple[float, ...]) -> _Geometry:
    """The fit's geometry for this axis, RBW and roll-offs, built on first use: the
    median step of a 17,000-point axis alone cost as much as one Gauss-Newton step."""
    key = (float(rbw_ghz), tuple(float(b) for b in rolloffs))
    cache = _GEOMETRIES.setdefault(axis, {})
    if key in cache:
        return cache[key]
    gaps = np.diff(axis.channel_ghz)
    widest = float(gaps.max()) if gaps.size else float(np.max(axis.slot_width_ghz))
    betas = np.asarray(rolloffs, dtype=np.float64)
    step_ghz = float(np.median(np.diff(axis.frequency_ghz)))
    # Points closer than a fraction of the RBW carry little new information (the
    # filter smooths the trace over its width): keep one every RBW / _POINTS_PER_RBW,
    # but at least _MIN_POINTS in the narrowest window.
    reach = float(np.min(gaps)) * 2 if gaps.size else 1e9
    stride = max(
        1, min(int(rbw_ghz / _POINTS_PER_RBW / step_ghz), int(reach / _MIN_POINTS / step_ghz))
    )
    nb = axis.neighbourhood(stride)
    gap_lo = np.concatenate(([_FAR_GHZ], gaps))
    gap_hi = np.concatenate((gaps, [_FAR_GHZ]))
    shift = np.stack((np.zeros_like(gap_lo), gap_lo, -gap_hi), axis=-1)
    # Points closer than the RBW see overlapping parts of the spectrum: what the
    # filter smooths (a shape that is slightly off) is correlated over ~RBW, so the
    # residual variance counts for fewer points (at most this inflation).
    correlation = max(1.0, rbw_ghz * _POINTS_PER_RBW / (2 * step_ghz * stride))
    valid_points = nb.valid.sum(axis=-1)[None, :].astype(np.float64)
    outer = (np.abs(nb.offset_ghz) > _INNER_FRACTION * nb.reach_ghz[:, None]) & nb.valid
    geometry = _Geometry(
        max_rate_gbd=rate_limit_gbd(widest),
        betas=betas,
        start=int(np.argmin(np.abs(betas - _START_ROLLOFF))),
        nb=nb,
        grid_u=(nb.offset_ghz[:, None, :] + shift[:, :, None])[None],
        slope=(nb.offset_ghz / nb.reach_ghz[:, None])[None],
        dof=np.maximum(valid_points - _N_COLUMNS, 1.0),
        correlation=correlation,
        outer=outer,
        outer_points=outer.sum(axis=-1),
        n_outer=outer.sum(axis=-1) / correlation,
    )
    if len(cache) >= _GEOMETRIES_PER_AXIS:
        cache.pop(next(iter(cache)), None)
    cache[key] = geometry
    return geometry


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
    geo = _geometry(axis, rbw_ghz, rolloffs)
    table = shape_table(float(rbw_ghz), tuple(float(b) for b in rolloffs), geo.max_rate_gbd)
    betas, nb = geo.betas, geo.nb
    if noise_level is None:
        noise_level = pit_noise_level(axis, p)

    # Start: the rate from the width at half maximum (above the noise) at the start
    # roll-off; the centre from the crossings.  Where a much stronger neighbour's skirt
    # is the slot's maximum and leaves a weak channel's own peak outside the outermost
    # crossings, the crossings around that peak (channel_crossings_ghz says where, and
    # why not as for the offset).  Started from the outermost crossings, by the
    # slot's edge at a few GBd, such a channel's shape was wrong in its neighbours'
    # windows too and moved their pedestals (28 GBd, neighbours up to 24 dB apart,
    # 12.5 GHz RBW: OSNRs 3.3 and 5.4 dB low at a claimed 0.03-0.09 dB).
    g = np.take(p, axis.slots.idx, axis=1)[..., 1:-1]
    peak = g.max(axis=-1).astype(np.float64)
    rise, fall, own_start = channel_crossings_ghz(g, peak, noise_level, axis, _OWN_PEAK_RISE)
    rate = table.rate_from_fwhm(fall - rise, geo.start)
    width_rate = rate
    centre = (rise + fall) / 2
    beta = np.full_like(rate, betas[geo.start])

    y = np.take(p, nb.idx, axis=1).astype(np.float64)  # (N, C, W)
    w = np.where(nb.valid[None], 1.0 / np.maximum(y, 1e-30), 0.0)
    wy = y * w
    # The weighted design, one row per column of the model and a last row holding the
    # weighted trace, ``(N, C, 15, W)``: one product with its own transpose gives the
    # normal matrix and its right-hand side together.  The twelve shape rows are
    # written in place by one look-up of the three shapes (as ``(N, C, 4, 3, W)``:
    # value and derivatives, own and neighbours); the pedestal's and the trace's rows
    # never change.
    n, c, width = wy.shape
    cols = np.empty((n, c, _N_COLUMNS + 1, width))
    cols[..., _LEVEL, :] = w
    np.multiply(geo.slope, w, out=cols[..., _SLOPE, :])
    cols[..., _N_COLUMNS, :] = wy
    shape_out = cols[..., :_N_SHAPE_COLUMNS, :].reshape(n, c, 4, 3, width)
    w_rows = w[..., None, :]

    def shape(
        beta: FloatArray,
        rate: FloatArray,
        u: FloatArray,
        out: _Shapes | None = None,
        weight: FloatArray | None = None,
    ) -> _Shapes:
        """A raised cosine at continuous roll-off ``beta`` (blended between the two
        tabulated roll-offs around it), rate and offset ``u``: value and derivatives
        in rate, ``u`` and roll-off (times ``weight``, into ``out``, if given)."""
        k = np.clip(np.searchsorted(betas, beta, side="right") - 1, 0, betas.size - 2)
        span = betas[k + 1] - betas[k]
        return table.evaluate_blend(
            (k * table.n_rates)[..., None],
            ((beta - betas[k]) / span)[..., None],
            span[..., None],
            rate[..., None],
            u,
            out,
            weight,
        )

    def design(beta: FloatArray, rate: FloatArray, centre: FloatArray) -> FloatArray:
        """The weighted design ``cols`` (see above) at these roll-offs, rates and
        centres: the own and the neighbours' shapes and their derivatives (the model's
        own term a T(x - c): d/d rate = a T_rate, d/dc = -a T_u, d/d beta = a T_beta;
        the neighbours' likewise, so that a neighbour still off is absorbed here rather
        than bent into this channel's noise)."""
        u = geo.grid_u - _with_neighbours(centre)[..., None]
        value, d_rate, d_u, d_rolloff = (shape_out[..., k, :, :] for k in range(4))
        out = (value, d_rate, d_u, d_rolloff)
        shape(_with_neighbours(beta), _with_neighbours(rate), u, out, w_rows)
        return cols

    def normal(a: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        """The normal equations of ``a`` scaled to a unit diagonal (the columns differ
        by many orders of magnitude: shapes ~1e-2, slope ~1, derivatives, all times
        weights ~1/p), with a tiny ridge: matrix, right-hand side and the scale."""
        gram = np.matmul(a, np.swapaxes(a, -1, -2))
        diag = np.einsum("...pp->...p", gram)[..., :_N_COLUMNS]
        scale = 1.0 / np.sqrt(np.where(diag > 0, diag, 1.0))
        g = gram[..., :_N_COLUMNS, :_N_COLUMNS] * scale[..., :, None] * scale[..., None, :]
        g += _RIDGE_MATRIX
        return g, gram[..., :_N_COLUMNS, _N_COLUMNS] * scale, scale

    def step(a: FloatArray) -> FloatArray:
        """Weighted least-squares coefficients alone (a Gauss-Newton step)."""
        g, rhs, scale = normal(a)
        return np.asarray(np.linalg.solve(g, rhs[..., None])[..., 0] * scale)

    # Gauss-Newton on the nonlinear (rate, centre, roll-off), the linear amplitudes
    # and noise solved exactly at each step (the derivative columns' coefficients are
    # the steps times the amplitude).  The start from the widths is within a few per
    # cent, and the neighbours' derivative columns decouple the channels, so a few
    # steps converge.
    for _ in range(_ITERATIONS):
        coef = step(design(beta, rate, centre))
        amp = coef[..., _OWN]
        ok = amp > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            d_rate = np.where(ok, coef[..., _D_RATE] / amp, 0.0)
            d_centre = np.where(ok, -coef[..., _D_CENTRE] / amp, 0.0)
            d_beta = np.where(ok, coef[..., _D_ROLLOFF] / amp, 0.0)
        d_rate = _clip(d_rate, -_MAX_RATE_STEP * rate, _MAX_RATE_STEP * rate)
        rate = table.clip_rate(rate + d_rate)
        centre = centre + _clip(d_centre, -_MAX_CENTRE_STEP_GHZ, _MAX_CENTRE_STEP_GHZ)
        beta = _clip(
            beta + _clip(d_beta, -_MAX_ROLLOFF_STEP, _MAX_ROLLOFF_STEP), betas[0], betas[-1]
        )

    # The final fit keeps the derivative columns: their coefficients are ~0 at the
    # optimum, and the covariance of (amplitude, noise) then includes what the shape
    # is free to trade (the linearised joint uncertainty).  Of the inverse normal
    # matrix only the columns of the amplitude, the noise level and the roll-off are
    # used: they are solved for with the coefficients (a full inverse cost more than
    # every solve of the iterations together).
    a = design(beta, rate, centre)
    scaled, rhs, scale = normal(a)
    rhs_and_unit = np.empty((*rhs.shape, 1 + len(_INVERSE_COLUMNS)))
    rhs_and_unit[..., 0] = rhs
    rhs_and_unit[..., 1:] = _UNIT_COLUMNS
    solved = np.linalg.solve(scaled, rhs_and_unit)
    coef = solved[..., 0] * scale

    def inverse(row: int, column: int) -> FloatArray:
        """An element of the (unscaled) inverse normal matrix."""
        solved_column = 1 + _INVERSE_COLUMNS.index(column)
        return np.asarray(solved[..., row, solved_column] * scale[..., row] * scale[..., column])

    inv_own, inv_own_level = inverse(_OWN, _OWN), inverse(_OWN, _LEVEL)
    inv_level, inv_rolloff = inverse(_LEVEL, _LEVEL), inverse(_D_ROLLOFF, _D_ROLLOFF)
    resid = wy - np.matmul(coef[..., None, :], a[..., :_N_COLUMNS, :])[..., 0, :]
    rss = np.asarray(np.einsum("ncw,ncw->nc", resid, resid))
    dof, correlation = geo.dof, geo.correlation
    inflation = _residual_inflation(resid, rss, correlation)
    sig, n0 = coef[..., _OWN], coef[..., _LEVEL]
    # The shape model itself is known to about _MODEL_ERROR of the trace (roll-off
    # blended between tables, the RBW taken as Gaussian): a noise-free trace's tiny
    # residual must not make a degenerate fit look certain.  That error is smooth
    # (correlated over the RBW), the reading noise need not be (a detector's noise
    # is independent from point to point): each gets its own inflation.
    var = np.maximum(rss / dof * inflation, _MODEL_ERROR**2 * correlation)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = (inv_own / sig**2 + inv_level / n0**2 - 2 * inv_own_level / (sig * n0)) * var
        unc = _DB_PER_NEPER * np.sqrt(np.maximum(rel, 0.0))
        osnr = 10 * np.log10(sig / (n0 / rbw_ghz * OSNR_REFERENCE_BANDWIDTH_GHZ))
        step_rate = np.abs(coef[..., _D_RATE] / sig) / rate
        step_centre = np.abs(coef[..., _D_CENTRE] / sig)
        step_beta = np.abs(coef[..., _D_ROLLOFF] / sig)
        # The roll-off's own one-sigma uncertainty: through a wide RBW a small roll-off
        # barely shows (0.01 moves a 30 GBd channel's edges by 0.15 GHz under a 12.5 GHz
        # filter), and the step the last solve asks for is then the noise's.
        sigma_beta = np.sqrt(np.maximum(inv_rolloff * var, 0.0)) / sig
    fitted = (sig > 0) & (n0 > 0)
    osnr = np.where(fitted, osnr, np.nan)
    # A fit that would still move (the step the final solve asks for), or is pinned
    # at the table's end, did not converge.
    pinned = (rate <= table.symbol_rate_gbd[0]) | (rate >= table.symbol_rate_gbd[-1])
    converged = (
        fitted
        & ~pinned
        & (step_rate <= _CONVERGED_RATE_STEP)
        & (step_centre <= _CONVERGED_CENTRE_STEP_GHZ)
        & (
            step_beta
            <= np.maximum(_CONVERGED_ROLLOFF_STEP, np.minimum(sigma_beta, _NOISY_ROLLOFF_STEP))
        )
    )
    unc = np.where(converged, unc, np.inf)

    # Shape of the residual: noise that is not smooth across the window (ASE carved
    # between channels by ROADM filters) leaves the trace systematically below the
    # model near the midpoints.  Compare the mean residual there with what the
    # residual scatter allows; a channel that fails has no credible fit.
    sigma = np.sqrt(rss / dof)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_outer = np.where(geo.outer[None], resid, 0.0).sum(axis=-1) / geo.outer_points
        z = np.abs(mean_outer) / (sigma / np.sqrt(np.maximum(geo.n_outer, 1.0)))
    unc = np.where(z > _MAX_RESIDUAL_Z, np.inf, unc)

    # For presence: the signal's peak at its lower two-sigma bound, and none where the
    # fit did not converge.  A dark slot's own column has nothing to fit; its rate
    # wanders to a shape that trades with the pedestal or a neighbour, and its
    # amplitude then means nothing.
    peak_shape = shape(beta, rate, np.zeros_like(rate)[..., None])[0][..., 0]
    sig_low = sig - 2.0 * np.sqrt(np.maximum(inv_own * var, 0.0))
    # An unconverged fit still counts when its shape stayed where the trace put it
    # (rate within _PRESENCE_RATE_DRIFT of the width's, centre within a quarter of
    # the spacing): a lit channel the fit cannot pin down to 0.2 % is still lit.
    settled = (np.abs(rate / np.maximum(width_rate, 1e-9) - 1.0) <= _PRESENCE_RATE_DRIFT) & (
        np.abs(centre) <= np.asarray(nb.reach_ghz) / 8
    )
    peak_low = np.where(converged | settled, np.maximum(sig_low, 0.0) * peak_shape, 0.0)
    # A slot started from its own peak (see the start) is no presence evidence: a failed
    # transmitter's open passband behind a ROADM, ASE alone, has that peak too and is
    # then fitted as a channel (on the generator 34 more of 378 failed slots read
    # present).  The start is there for its neighbours' fits.
    peak_low = np.where(own_start, 0.0, peak_low)
    return FitResult(
        signal_mw=sig,
        noise_psd_mw_per_ghz=n0 / rbw_ghz,
        osnr_db=osnr,
        uncertainty_db=np.where(np.isfinite(osnr), unc, np.nan),
        symbol_rate_gbd=rate,
        signal_peak=peak_low,
        width_rate_gbd=width_rate,
        rolloff=beta,
    )
