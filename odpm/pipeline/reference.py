"""OSNR from a second trace: the "reference" method.

Reference (EXFO, US 9,112,604 / US 9,596,027): a trace of the same channels at high
OSNR gives each channel's shape.  Over the channel's slot the live trace is fitted as
``g ref(x) + noise(x)`` by weighted least squares (weights ``1/p``, as in
:mod:`odpm.pipeline.fit`); see :func:`reference`.  The noise is the ASE, smooth across
the slot (``n0 + n1 u``), seen through whatever the line's ROADMs leave of it: nothing
(an unfiltered line), or a WSS whose passbands (:func:`wss_passband_through_rbw`) carve
it at the slot's edges, ``(n0 + n1 u)(floor + (1 - floor) T)``.  Which one, and the
passband's width and edge, the trace's channels tell together (a WSS treats them
alike).  It assumes the shape has not changed since the reference was taken, a WSS
passband centred on its slot, the same for every slot of the trace, with Gaussian
edges (Pulikkaseril et al. 2011), and a Gaussian resolution filter.

It returns per-channel arrays ``(N, C)`` (:class:`~odpm.pipeline.companions.CompanionResult`);
NaN where the method gives no number.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from odpm.models import FloatArray
from odpm.pipeline.axis import TraceAxis
from odpm.pipeline.companions import DB_PER_NEPER, CompanionResult
from odpm.pipeline.formulas import BoolArray, IntArray, osnr_db
from odpm.special import erf

_RIDGE = 1e-9
#: The reference fit is repeated over this inner fraction of the slot; the change
#: of OSNR beyond what the inner fit's own noise explains counts as uncertainty.
_INNER_FRACTION = 0.75
#: WSS passbands the reference fit tries: the slot minus a guard of 1-16 GHz at -3 dB
#: (LCoS WSS: ~ slot - 6..8 GHz), Gaussian edges of 0-5 GHz (typically 1.5-3 GHz),
#: in 0.5 GHz steps (a coarser grid, refined around its best, missed the narrow
#: valley the residuals have along guard and edge together).
_WSS_GUARD_GHZ = np.arange(1.0, 16.01, 0.5)
_WSS_EDGE_GHZ = np.arange(0.0, 5.01, 0.5)
#: A channel whose best residual exceeds this many times the trace's median does not
#: vote on the trace's noise shape (a dark slot, whose "shape" is noise).
_OUTLIER_RATIO = 4.0
#: A slot whose reference power is below this fraction of the median slot's holds
#: no channel (the WSS blocks a dark slot: its power is the carved floor, 20-40 dB
#: down; a lit channel's power varies by a few dB).
_DARK_FRACTION = 0.01
#: Points per RBW the shape search uses (see :func:`_search_stride`).
_SEARCH_POINTS_PER_RBW = 4.0
#: Columns of the reference fit: the reference and four of noise (see :class:`_Passbands`).
_FIT_COLUMNS = 5
#: Noise shapes within this many residual variances of the best are plausible: one,
#: the profile-likelihood interval of one sigma (the uncertainty is one-sigma in
#: spirit; the variance is inflated for the RBW's correlation of the points).
_PLAUSIBLE_CHI2 = 1.0
_CANDIDATES: weakref.WeakKeyDictionary[TraceAxis, dict[float, _Passbands]] = (
    weakref.WeakKeyDictionary()
)


def wss_passband_through_rbw(
    offset_ghz: FloatArray, passband_ghz: FloatArray, sigma_ghz: FloatArray
) -> FloatArray:
    """A WSS passband as the monitor sees it (peak 1) at ``offset_ghz`` from its centre.

    The passband is a box of ``passband_ghz`` (its width at -3 dB) with Gaussian edges
    (Pulikkaseril et al., "Spectral modeling of channel band shapes in wavelength
    selective switches", Opt. Express 19(9), 2011).  Seen through a Gaussian resolution
    filter it is the same box with the two Gaussians combined,
    ``sigma^2 = sigma_edge^2 + sigma_rbw^2``::

        0.5 [erf((x + B/2) / (sqrt2 sigma)) - erf((x - B/2) / (sqrt2 sigma))]
    """
    k = 1.0 / (math.sqrt(2.0) * sigma_ghz)
    half = passband_ghz / 2.0
    return np.asarray(0.5 * (erf((offset_ghz + half) * k) - erf((offset_ghz - half) * k)))


@dataclass(frozen=True, slots=True)
class _Passbands:
    """Candidate WSS transmissions across each slot, for the reference fit.

    The noise in a slot is modelled as the ASE, ``n0 + n1 u`` (``u`` the offset from
    the grid centre over half the slot: the ASE's own slope, as gain ripple of 0.5 dB
    peak to peak over 400 GHz tilts a 50 GHz slot by up to ~0.2 dB, and a model
    without it reads carved noise 0.2-0.5 dB low), times the WSS's transmission
    ``floor + (1 - floor) T``: the columns ``T``, ``1``, ``T u``, ``u``.  ``T = 0``
    is an unfiltered line (its ``T`` columns drop out).  Per candidate ``k``: ``t``
    ``(K, C, L)`` at the slot's points (``(K, N, C, L)`` when it differs per trace),
    ``centre`` ``T(0)``, ``slot``/``slot_u`` ``T`` and ``T u`` integrated over the
    slot with the slot power's own weights (so the noise is taken out exactly as it
    went in; on the shape search's sparser points, by the trapezoid rule), ``(K, 1|N,
    C)``; ``guard``/``edge`` the WSS's (NaN: unfiltered),
    ``(K, 1|N)``.
    """

    t: FloatArray
    centre: FloatArray
    slot: FloatArray
    slot_u: FloatArray
    guard: FloatArray
    edge: FloatArray


@dataclass(frozen=True, slots=True)
class _SlotPoints:
    """Each slot's points: ``u`` ``(C, L + 2)`` for every point the slot integral uses
    (offset from the grid centre over half the slot width), its weights, and the
    integrals of ``1`` and ``u`` over the slot ``(C,)``."""

    x_ghz: FloatArray
    u: FloatArray
    weights: FloatArray
    one_slot: FloatArray
    u_slot: FloatArray


def _slot_points(axis: TraceAxis) -> _SlotPoints:
    f_given = np.empty_like(axis.frequency_ghz)
    f_given[axis.order] = axis.frequency_ghz
    x = f_given[axis.slots.idx] - axis.channel_ghz[:, None]
    u = x / (axis.slot_width_ghz[:, None] / 2)
    weights = axis.slots.weights.astype(np.float64)
    return _SlotPoints(x, u, weights, weights.sum(axis=-1), (u * weights).sum(axis=-1))


def _passbands(
    axis: TraceAxis,
    rbw_ghz: float,
    guard_ghz: FloatArray,
    edge_ghz: FloatArray,
    neighbours: npt.NDArray[np.bool_],
    stride: int = 1,
) -> _Passbands:
    """WSS candidates ``(K,)``: passbands of the slot width minus ``guard_ghz`` at
    -3 dB with Gaussian edges of ``edge_ghz`` (NaN guard: no WSS, ``T = 0``), with the
    lower and upper neighbour's passband where ``neighbours`` ``(K, 2)`` says (merged:
    at most 1, as in a WSS); ``t`` at every ``stride``-th slot point."""
    pts = _slot_points(axis)
    width, centre = axis.slot_width_ghz, axis.channel_ghz
    unfiltered = np.isnan(guard_ghz)[:, None, None]
    guard = np.where(unfiltered, 0.0, guard_ghz[:, None, None])
    edge = np.where(np.isnan(edge_ghz), 0.0, edge_ghz)
    sigma = np.hypot(edge, rbw_ghz / math.sqrt(2.0 * math.pi))[:, None, None]
    # Each neighbour's centre (from this channel's) and width; none beyond the plan.
    sides = (
        (np.r_[np.inf, centre[:-1] - centre[1:]], np.r_[0.0, width[:-1]]),
        (np.r_[centre[1:] - centre[:-1], np.inf], np.r_[width[1:], 0.0]),
    )

    def transmission(at: FloatArray) -> FloatArray:
        total = wss_passband_through_rbw(at[None], width[:, None] - guard, sigma)
        for side, (offset, w) in enumerate(sides):
            band = np.maximum(w[:, None] - guard, 0.0)
            passband = wss_passband_through_rbw(at[None] - offset[:, None], band, sigma)
            total = total + np.where(neighbours[:, side, None, None], passband, 0.0)
        return np.asarray(np.where(unfiltered, 0.0, np.minimum(total, 1.0)))

    if stride == 1:  # the slot integral's own points and weights
        t = transmission(pts.x_ghz)
        slot = np.einsum("kcl,cl->kc", t, pts.weights)
        slot_u = np.einsum("kcl,cl->kc", t, pts.u * pts.weights)
    else:  # every stride-th point and the slot's edges, by the trapezoid rule
        half = width[:, None] / 2
        x = np.concatenate((-half, pts.x_ghz[:, 1:-1][:, ::stride], half), axis=1)
        t = transmission(x)
        slot = np.trapezoid(t, x[None], axis=-1)
        slot_u = np.trapezoid(t * (x / half)[None], x[None], axis=-1)
    return _Passbands(
        t=t[..., 1:-1],
        centre=transmission(np.zeros((centre.size, 1)))[:, None, :, 0],
        slot=slot[:, None],
        slot_u=slot_u[:, None],
        guard=guard_ghz[:, None],
        edge=edge_ghz[:, None],
    )


def _per_trace(bands: _Passbands, k: int, n: int) -> _Passbands:
    """``(n k, ...)`` candidates, trace-major, as ``(k, n, ...)``: each trace its own."""

    def split(v: FloatArray) -> FloatArray:
        return v.reshape(n, k, *v.shape[1:]).swapaxes(0, 1)

    return _Passbands(
        t=split(bands.t),
        centre=split(bands.centre)[:, :, 0],
        slot=split(bands.slot)[:, :, 0],
        slot_u=split(bands.slot_u)[:, :, 0],
        guard=split(bands.guard)[:, :, 0],
        edge=split(bands.edge)[:, :, 0],
    )


def _search_stride(axis: TraceAxis, rbw_ghz: float) -> int:
    """Every how many slot points the shape search uses: :data:`_SEARCH_POINTS_PER_RBW`
    per RBW (the trace is smooth over an RBW; a 0.002 nm trace has ~25 points in a
    6.25 GHz RBW, which made the search five times as long for no better choice)."""
    step_ghz = float(np.median(np.diff(axis.frequency_ghz)))
    return max(1, int(rbw_ghz / _SEARCH_POINTS_PER_RBW / step_ghz))


def _candidates(axis: TraceAxis, rbw_ghz: float) -> _Passbands:
    """The shapes a trace chooses from (cached per axis and RBW): the unfiltered line,
    then every WSS of :data:`_WSS_GUARD_GHZ` x :data:`_WSS_EDGE_GHZ`, every slot's
    neighbours with their passbands, at every :func:`_search_stride`-th point."""
    per_axis = _CANDIDATES.setdefault(axis, {})
    if rbw_ghz not in per_axis:
        guard, edge = (v.ravel() for v in np.meshgrid(_WSS_GUARD_GHZ, _WSS_EDGE_GHZ, indexing="ij"))
        guard, edge = np.r_[np.nan, guard], np.r_[np.nan, edge]
        neighbours = np.ones((guard.size, 2), bool)
        stride = _search_stride(axis, rbw_ghz)
        per_axis[rbw_ghz] = _passbands(axis, rbw_ghz, guard, edge, neighbours, stride)
    return per_axis[rbw_ghz]


@dataclass(frozen=True, slots=True)
class _Fit:
    """Weighted least squares ``y = g shape + n_T T + n_1 + n_Tu T u + n_u u`` per
    candidate, trace and channel ``(K, N, C)``: coefficients ``(..., 5)``, inverse
    normal matrix ``(..., 5, 5)``, weighted residual sum of squares, and the OSNR,
    signal and noise density at the centre it gives."""

    coef: FloatArray
    gram: FloatArray
    rss: FloatArray
    osnr_db: FloatArray
    signal_mw: FloatArray
    noise_psd: FloatArray

    def pick(self, k: IntArray) -> _Fit:
        """Candidate ``k`` ``(N, C)`` of every trace and channel, as a ``(1, N, C)`` fit."""
        n, c = np.indices(k.shape)
        return _Fit(
            self.coef[k, n, c][None],
            self.gram[:, :, k, n, c][:, :, None],
            self.rss[k, n, c][None],
            self.osnr_db[k, n, c][None],
            self.signal_mw[k, n, c][None],
            self.noise_psd[k, n, c][None],
        )


def _solve_spd(gram: FloatArray, rhs: FloatArray) -> tuple[FloatArray, FloatArray]:
    """``gram x = rhs`` for many small symmetric positive definite systems at once, by
    Cholesky (``gram = L L^T``) vectorised over the systems (one LAPACK call per
    5 x 5 system cost more than all the sums): ``x`` and ``rhs . x = |L^-1 rhs|^2``,
    the part of the data the fit explains.  ``gram`` ``(M, M, ...)`` and ``rhs``
    ``(M, ...)`` have their matrix axes first, so every step below works on whole
    contiguous arrays of systems.  A pivot is kept above :data:`_RIDGE` times its
    diagonal (columns that coincide, such as a passband as wide as the slot and the
    constant, then share the coefficient rather than blow up)."""
    m = gram.shape[0]
    a, r = gram, rhs
    low = np.zeros_like(a)
    for j in range(m):
        d = np.sqrt(np.maximum(a[j, j] - (low[j, :j] ** 2).sum(axis=0), _RIDGE * a[j, j]))
        low[j, j] = d
        for i in range(j + 1, m):
            low[i, j] = (a[i, j] - (low[i, :j] * low[j, :j]).sum(axis=0)) / d
    z = np.zeros_like(r)
    for j in range(m):
        z[j] = (r[j] - (low[j, :j] * z[:j]).sum(axis=0)) / low[j, j]
    x = np.zeros_like(r)
    for j in reversed(range(m)):
        x[j] = (z[j] - (low[j + 1 :, j] * x[j + 1 :]).sum(axis=0)) / low[j, j]
    return x, (z * z).sum(axis=0)


def _fit_reference(
    y: FloatArray,
    shape: FloatArray,
    w: FloatArray,
    pts: _SlotPoints,
    bands: _Passbands,
    ref_n: FloatArray,
    slot_mw: FloatArray,
    rbw_ghz: float,
    stride: int = 1,
) -> _Fit:
    """Fit every candidate of ``bands``; ``y``, ``shape``, ``w`` ``(N, C, L)`` at every
    ``stride``-th slot point.

    Every entry of the normal equations is a weighted sum of ``T^a u^b`` (``a`` 0-2,
    ``b`` 0-2) over the points, so two ``einsum``s against ``T`` and ``T^2`` build
    them for all candidates without forming a ``(K, N, C, L)`` array.  ``live - g ref
    = (n_live - g n_ref) T``: the reference's own noise ``g n_ref`` goes back on, in
    the fitted noise's shape, and the signal is the slot power minus that noise over
    the slot."""
    u = pts.u[:, 1:-1][:, ::stride]
    w2 = w * w
    ws, wy = w2 * shape, w2 * y
    sub = "kncl" if bands.t.ndim == 4 else "kcl"
    left = np.stack((w2, w2 * u, w2 * u * u, ws, ws * u, wy, wy * u))
    on_t = np.einsum(f"jncl,{sub}->jknc", left, bands.t)
    on_t2 = np.einsum(f"jncl,{sub}->jknc", left[:3], bands.t * bands.t)
    t0, t1, t2, ts0, ts1, ty0, ty1 = on_t  # sum w2 u^b T, sum ws u^b T, sum wy u^b T
    tt0, tt1, tt2 = on_t2  # sum w2 u^b T^2
    s0, s1, s2 = (np.broadcast_to(v.sum(axis=-1), t0.shape) for v in left[:3])
    ss0, ss1 = (np.broadcast_to(v.sum(axis=-1), t0.shape) for v in left[3:5])
    sss = np.broadcast_to((ws * shape).sum(axis=-1), t0.shape)
    y0, y1 = (np.broadcast_to(v.sum(axis=-1), t0.shape) for v in left[5:])
    ysh = np.broadcast_to((wy * shape).sum(axis=-1), t0.shape)
    # Columns: shape, T, 1, T u, u; the matrix axes first (see _solve_spd).
    upper = (
        (sss, ts0, ss0, ts1, ss1),
        (tt0, t0, tt1, t1),
        (s0, t1, s1),
        (tt2, t2),
        (s2,),
    )
    gram = np.empty((_FIT_COLUMNS, _FIT_COLUMNS, *t0.shape))
    for i, row in enumerate(upper):
        for j, value in enumerate(row, start=i):
            gram[i, j] = gram[j, i] = value
        gram[i, i] += np.where(gram[i, i] > 0, _RIDGE * gram[i, i], 1.0)
    rhs = np.stack((ysh, ty0, y0, ty1, y1))
    coef, explained = _solve_spd(gram, rhs)
    rss = np.maximum((wy * y).sum(axis=-1) - explained, 0.0)

    g, n_t, n_1, n_tu, n_u = coef
    fitted = n_t * bands.centre + n_1
    noise = fitted + g * ref_n
    in_fit = n_t * bands.slot + n_1 * pts.one_slot + n_tu * bands.slot_u + n_u * pts.u_slot
    with np.errstate(divide="ignore", invalid="ignore"):
        in_slot = in_fit * (noise / fitted)
    signal = slot_mw - in_slot / rbw_ghz
    ok = (g > 0) & (fitted > 0) & (signal > 0)
    osnr = np.where(ok, osnr_db(signal, noise / rbw_ghz), np.nan)
    return _Fit(
        np.moveaxis(coef, 0, -1),
        gram,
        rss,
        np.asarray(osnr),
        np.asarray(signal),
        np.asarray(noise / rbw_ghz),
    )


def _log_ratio_var(
    fit: _Fit, bands: _Passbands, n_points: IntArray, correlation: float
) -> FloatArray:
    """The fit's variance of ``ln g - ln noise(0)`` (the OSNR in nepers, up to the
    signal's small share of noise), from its covariance ``(K, N, C)``."""
    var = fit.rss / np.maximum(n_points - fit.coef.shape[-1], 1.0) * correlation
    t0 = np.broadcast_to(bands.centre, fit.rss.shape)
    zero = np.zeros_like(t0)
    e = np.stack((zero, t0, np.ones_like(t0), zero, zero), axis=-1)  # noise(0) = e . coef
    g = fit.coef[..., 0]
    n0 = np.einsum("...p,...p->...", e, fit.coef)
    inv = np.linalg.inv(np.moveaxis(fit.gram, (0, 1), (-2, -1)))
    vg = inv[..., 0, 0]
    vn = np.einsum("...p,...pq,...q->...", e, inv, e)
    cgn = np.einsum("...q,...q->...", inv[..., 0, :], e)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(np.maximum(vg / g**2 + vn / n0**2 - 2 * cgn / (g * n0), 0.0) * var)


def _choose_shape(
    rss: FloatArray,
    unfiltered: BoolArray,
    n_points: IntArray,
    correlation: float,
    voters: BoolArray,
) -> tuple[IntArray, BoolArray]:
    """Per trace, the candidate noise shape that fits its channels best ``(N,)``, and
    the candidates it cannot tell from that one ``(K, N)``; ``unfiltered`` ``(K, 1)``
    marks the smooth line.

    A WSS treats every channel of the trace alike, so the shape is chosen for the
    whole trace, by the sum of the weighted residuals over its channels.  Only
    ``voters`` ``(N, C)`` vote (channels whose neighbours are both lit: the
    candidates give every neighbour its passband, and a dark neighbour's slot is
    blocked), and of those not the ones no candidate fits (best residual over
    :data:`_OUTLIER_RATIO` times the trace's median).  A candidate is
    plausible when its residual sum exceeds the best by at most
    :data:`_PLAUSIBLE_CHI2` residual variances (inflated by the RBW's correlation of
    neighbouring points)."""
    best_c = rss.min(axis=0)  # (N, C)
    median = np.median(best_c, axis=-1, keepdims=True)
    votes = voters & (best_c <= _OUTLIER_RATIO * median) & (n_points > _FIT_COLUMNS)
    score = np.where(votes[None], rss, 0.0).sum(axis=-1)  # (K, N)
    dof = np.maximum(np.where(votes, n_points - _FIT_COLUMNS, 0).sum(axis=-1), 1)
    sigma2 = score.min(axis=0) / dof  # the residual variance per point
    # Akaike: a WSS shape has two more columns per channel, and its guard and edge;
    # it must explain the trace better than the smooth line by more than those
    # would by chance (about sigma2 each), twice over.
    extra = np.where(unfiltered, 0.0, 2.0 * votes.sum(axis=-1) + 2.0)
    score = score + 2.0 * sigma2 * extra
    lowest = score.min(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = (score - lowest) / (sigma2 * correlation)
    return np.asarray(score.argmin(axis=0)), np.asarray(delta <= _PLAUSIBLE_CHI2)


def _with_neighbours(
    axis: TraceAxis, rbw_ghz: float, guard: FloatArray, edge: FloatArray
) -> _Passbands:
    """Four variants ``(4, N, ...)`` of each trace's WSS (``guard``, ``edge`` ``(N,)``;
    NaN: unfiltered): its passband with no, the lower, the upper or both neighbours'
    passbands (a dark neighbour's slot is blocked)."""
    n = guard.size
    flags = np.tile(np.array([[False, False], [True, False], [False, True], [True, True]]), (n, 1))
    bands = _passbands(axis, rbw_ghz, np.repeat(guard, 4), np.repeat(edge, 4), flags)
    return _per_trace(bands, 4, n)


def _pick(bands: _Passbands, k: IntArray) -> _Passbands:
    """Variant ``k`` ``(N, C)`` of ``(4, N, ...)`` passbands, as one ``(1, N, ...)``."""
    n, c = np.indices(k.shape)
    return _Passbands(
        t=bands.t[k, n, c][None],
        centre=bands.centre[k, n, c][None],
        slot=bands.slot[k, n, c][None],
        slot_u=bands.slot_u[k, n, c][None],
        guard=bands.guard[:1],  # the variants share them
        edge=bands.edge[:1],
    )


def reference(
    axis: TraceAxis,
    p: npt.NDArray[np.float32],
    ref: npt.NDArray[np.float32],
    ref_noise_psd: FloatArray,
    slot_mw: FloatArray,
    rbw_ghz: float,
) -> CompanionResult:
    """The reference-trace method.  ``ref`` ``(1, K')`` linear on the same axis;
    ``ref_noise_psd`` ``(1, C)`` the reference's own noise where its analysis could
    tell (0 elsewhere: at high OSNR it is a small correction); ``slot_mw`` the live
    slot powers.

    The live slot is fitted as ``g x ref + noise`` (the reference *with* its noise,
    so nothing depends on estimating that noise well).  The noise's shape across the
    slot (:class:`_Passbands`) is chosen per trace (:func:`_choose_shape`): a smooth
    line (no ROADM filter) or a WSS passband (:func:`wss_passband_through_rbw`) of
    the slot and its neighbours, on a grid of guards and edges; then per channel
    whether each neighbour's passband is there.  The live noise density is the
    fitted noise at the centre plus ``g`` times the reference's own, the signal the
    slot power minus that noise over the slot.

    Uncertainty: the fit's covariance; how far the OSNR moves over the shapes the
    trace cannot tell from the chosen one; and how far it moves when the fit is
    restricted to the inner :data:`_INNER_FRACTION` of the slot, beyond twice what
    the inner fit's own noise explains (a noise shape no candidate follows makes the
    two disagree, and the channel is flagged).
    """
    idx = axis.slots.idx[:, 1:-1]  # the slot's own points (C, L)
    y = np.take(p, idx, axis=1).astype(np.float64)  # (N, C, L)
    shape = np.broadcast_to(np.take(ref, idx, axis=1).astype(np.float64), y.shape)
    # Padded slot points repeat the last one: weight each distinct point once.
    distinct = np.concatenate((np.ones((idx.shape[0], 1), bool), np.diff(idx, axis=1) != 0), axis=1)
    w = np.where(distinct[None], 1.0 / np.maximum(y, 1e-30), 0.0)
    step_ghz = float(np.median(np.diff(axis.frequency_ghz)))
    correlation = max(1.0, rbw_ghz / step_ghz)
    ref_n = np.where(np.isfinite(ref_noise_psd), ref_noise_psd, 0.0) * rbw_ghz
    n_points = (w > 0).sum(axis=-1)
    n_idx = np.arange(y.shape[0])
    pts = _slot_points(axis)

    def fit(bands: _Passbands, weights: FloatArray = w, stride: int = 1) -> _Fit:
        at = np.s_[..., ::stride]
        return _fit_reference(
            y[at], shape[at], weights[at], pts, bands, ref_n, slot_mw, rbw_ghz, stride
        )

    # The trace's noise shape (on fewer points where the trace is finely sampled),
    # then each channel's neighbours.
    grid = _candidates(axis, rbw_ghz)
    stride = _search_stride(axis, rbw_ghz)
    every = fit(grid, stride=stride)
    # A slot the reference shows no channel in is dark: the WSS blocks it.
    ref_slot = axis.slots.integrate(np.take(ref, axis.slots.idx, axis=1))  # (1, C)
    lit = ref_slot >= _DARK_FRACTION * np.median(ref_slot, axis=-1, keepdims=True)
    edge_of_plan = np.ones_like(lit[:, :1])
    voters = (
        lit
        & np.concatenate((edge_of_plan, lit[:, :-1]), axis=-1)
        & np.concatenate((lit[:, 1:], edge_of_plan), axis=-1)
    )
    best, plausible = _choose_shape(
        every.rss,
        np.isnan(grid.guard),
        (w[..., ::stride] > 0).sum(axis=-1),
        max(1.0, correlation / stride),
        voters,
    )
    variants = _with_neighbours(axis, rbw_ghz, grid.guard[best, 0], grid.edge[best, 0])
    fits = fit(variants)
    variant = fits.rss.argmin(axis=0)  # (N, C)
    chosen_fit, chosen = fits.pick(variant), _pick(variants, variant)
    osnr = chosen_fit.osnr_db[0]
    fit_var = _log_ratio_var(chosen_fit, chosen, n_points, correlation)[0]
    # The shapes the trace cannot tell from the chosen one (judged among the
    # candidates, which all give every neighbour its passband).
    at_best = every.osnr_db[best, n_idx]
    spread = np.where(plausible[..., None], np.abs(every.osnr_db - at_best[None]), 0.0)
    # The same shape over the inner part of the slot: a disagreement beyond twice
    # what the inner fit's own noise explains (its variance less the full fit's).
    inner = np.abs(axis.slot_offset_ghz) <= _INNER_FRACTION * axis.slot_width_ghz[:, None] / 2
    w_inner = np.where(inner[None], w, 0.0)
    fit_in = fit(chosen, w_inner)
    var_in = _log_ratio_var(fit_in, chosen, (w_inner > 0).sum(axis=-1), correlation)[0]
    allowed = 2.0 * DB_PER_NEPER * np.sqrt(np.maximum(var_in - fit_var, 0.0))
    moved = np.maximum(np.abs(fit_in.osnr_db[0] - osnr) - allowed, 0.0)
    unc = np.sqrt(DB_PER_NEPER**2 * fit_var + np.nanmax(spread, axis=0) ** 2 + moved**2)
    return CompanionResult(
        signal_mw=chosen_fit.signal_mw[0],
        noise_psd_mw_per_ghz=chosen_fit.noise_psd[0],
        osnr_db=osnr,
        uncertainty_db=np.asarray(np.where(np.isfinite(osnr), unc, np.nan)),
    )
