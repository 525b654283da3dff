"""OSNR from a second trace: the "signal_off" and "reference" methods.

Signal-off (IEC TR 61282-12's integral method; Yokogawa AQ6370 DUAL TRACE; EXFO's
commissioning assistant): with the channels switched off, the trace shows the noise
that lies under them, carved by whatever filters it crossed.  Per channel:

* signal ``S = P_on(slot) - P_off(slot)`` (both integrated over the slot exactly as
  the slot power is);
* noise density at the carrier ``N(f_c)`` = the off trace averaged over the points
  within half an RBW of the measured centre, over the RBW;
* ``OSNR = S / (N(f_c) x 12.5 GHz)``; uncertainty from the spread of those points.

Reference (EXFO, US 9,112,604 / US 9,596,027): a trace of the same channels at high
OSNR gives each channel's shape.  Over the channel's slot the live trace is fitted as
``g ref(x) + n0 + n1 (x - f_c)`` by weighted least squares (weights ``1/p``, as in
:mod:`odpm.pipeline.fit`); see :func:`reference`.  It assumes the noise is smooth
across the slot and the shape has not changed since the reference was taken.

Both return per-channel arrays ``(N, C)``; NaN where the method gives no number.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from odpm.models import FloatArray
from odpm.pipeline.axis import TraceAxis
from odpm.pipeline.formulas import BoolArray, IntArray, osnr_db

_DB_PER_NEPER = 10.0 / math.log(10.0)
#: The signal must be at least this fraction of the on-trace slot power for a
#: signal-off reading: otherwise the channel was not switched off (or is not there).
_MIN_SIGNAL_FRACTION = 0.05
_RIDGE = 1e-9
#: The reference fit is repeated over this inner fraction of the slot; the change
#: of OSNR counts as uncertainty.
_INNER_FRACTION = 0.75
#: WSS passbands the reference fit tries: the slot minus a guard of 1-16 GHz at -3 dB
#: (LCoS WSS: ~ slot - 6..8 GHz), Gaussian edges of 0-5 GHz (typically 1.5-3 GHz).
_WSS_GUARD_GHZ = np.arange(1.0, 16.01, 0.5)
_WSS_EDGE_GHZ = np.arange(0.0, 5.01, 0.5)
#: A channel whose best residual exceeds this many times the trace's median does not
#: vote on the trace's noise shape (a dark slot, whose "shape" is noise).
_OUTLIER_RATIO = 4.0
#: Noise columns of every candidate shape (see :class:`_NoiseShapes`).
_NOISE_COLUMNS = 4
#: Noise shapes within this many residual variances of the best are plausible.
_PLAUSIBLE_CHI2 = 4.0
_CANDIDATES: weakref.WeakKeyDictionary[TraceAxis, dict[float, _NoiseShapes]] = (
    weakref.WeakKeyDictionary()
)


@dataclass(frozen=True, slots=True)
class CompanionResult:
    """Per channel ``(N, C)``: signal (mW), noise PSD (mW/GHz), OSNR and uncertainty (dB)."""

    signal_mw: FloatArray
    noise_psd_mw_per_ghz: FloatArray
    osnr_db: FloatArray
    uncertainty_db: FloatArray


def signal_off(
    axis: TraceAxis,
    p: npt.NDArray[np.float32],
    off: npt.NDArray[np.float32],
    rbw_ghz: float,
    centre_ghz: FloatArray,
    slot_mw: FloatArray,
) -> CompanionResult:
    """The signal-off method (see the module docstring).  ``off`` is ``(1, K')`` or
    ``(N, K')`` linear on the same axis as ``p``; ``centre_ghz`` ``(N, C)`` is each
    channel's measured centre from its grid frequency (NaN: use the grid centre)."""
    del p  # the on trace enters through slot_mw
    off_window = np.take(off, axis.slots.idx, axis=1)
    off_slot_mw = axis.slots.integrate(off_window) / rbw_ghz
    g = off_window[..., 1:-1].astype(np.float64)  # (N', C, L)
    centre = np.where(np.isfinite(centre_ghz), centre_ghz, 0.0)
    near = np.abs(axis.slot_offset_ghz[None] - centre[..., None]) <= rbw_ghz / 2
    # At least the nearest point, whatever the sampling.
    nearest = np.abs(axis.slot_offset_ghz[None] - centre[..., None]).argmin(axis=-1)
    near |= np.arange(g.shape[-1])[None, None, :] == nearest[..., None]
    count = near.sum(axis=-1)
    mean = np.where(near, g, 0.0).sum(axis=-1) / count
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log(np.where(near & (g > 0), g, np.nan))
        spread = np.nanstd(np.where(near, logs, np.nan), axis=-1)
    noise_psd = mean / rbw_ghz
    signal = slot_mw - off_slot_mw
    ok = (signal > _MIN_SIGNAL_FRACTION * slot_mw) & (noise_psd > 0)
    unc = _DB_PER_NEPER * spread / np.sqrt(np.maximum(count, 1))
    osnr = np.where(ok, osnr_db(signal, noise_psd), np.nan)
    return CompanionResult(
        signal_mw=np.asarray(signal),
        noise_psd_mw_per_ghz=np.asarray(noise_psd),
        osnr_db=np.asarray(osnr),
        uncertainty_db=np.asarray(np.where(ok, unc, np.nan)),
    )


def _erf(x: FloatArray) -> FloatArray:
    """erf by Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7; numpy has none)."""
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (
        0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))
    )
    return np.asarray(np.sign(x) * (1.0 - poly * np.exp(-a * a)))


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
    return np.asarray(0.5 * (_erf((offset_ghz + half) * k) - _erf((offset_ghz - half) * k)))


@dataclass(frozen=True, slots=True)
class _NoiseShapes:
    """Candidate shapes of the noise across each slot, for the reference fit.

    Candidate ``k`` models the noise in slot ``c`` as ``sum_m n_m col[k, c, :, m]``
    (:data:`_NOISE_COLUMNS` columns): ``cols`` ``(K, C, L, M)`` at the slot's points
    (``(K, N, C, L, M)`` when they differ per trace); ``centre`` at the grid centre and
    ``slot`` integrated over the slot with the slot power's own weights (so the noise
    is taken out exactly as it went in), ``(K, 1, C, M)`` or ``(K, N, C, M)``.

    An unfiltered line's noise is ``n0 + n1 u`` (``u`` the offset over half the slot;
    the third column is zero).  Behind a WSS it is ``T (n0 + n1 u) + n_floor``: ``T``
    its passbands seen through the RBW, ``u`` the ASE's own slope across the slot
    (gain ripple: 0.5 dB peak to peak over 400 GHz tilts a 50 GHz slot by up to
    ~0.2 dB), ``n_floor`` what the WSS lets through outside its passbands.
    """

    cols: FloatArray
    centre: FloatArray
    slot: FloatArray


def _slot_points(axis: TraceAxis) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Offsets from the grid centre ``(C, L + 2)`` of every point the slot integral
    uses, the same over half the slot width, and the integral's weights."""
    f_given = np.empty_like(axis.frequency_ghz)
    f_given[axis.order] = axis.frequency_ghz
    x = f_given[axis.slots.idx] - axis.channel_ghz[:, None]
    return (
        np.asarray(x),
        x / (axis.slot_width_ghz[:, None] / 2),
        axis.slots.weights.astype(np.float64),
    )


def _shapes(cols_window: FloatArray, centre: FloatArray, weights: FloatArray) -> _NoiseShapes:
    """``cols_window`` ``(K, C, L + 2, M)`` on the slot integral's points, ``centre``
    ``(K, C, M)``."""
    return _NoiseShapes(
        cols=cols_window[..., 1:-1, :],
        centre=centre[:, None],
        slot=np.einsum("kclm,cl->kcm", cols_window, weights)[:, None],
    )


def _smooth_shape(axis: TraceAxis) -> _NoiseShapes:
    """The noise of an unfiltered line: ``n0 + n1 u`` (one candidate)."""
    _, u, weights = _slot_points(axis)
    zero = np.zeros_like(u)
    cols = np.stack((np.ones_like(u), u, zero, zero), axis=-1)[None]
    centre = np.broadcast_to(np.array([1.0, 0.0, 0.0, 0.0]), (1, axis.n_channels, _NOISE_COLUMNS))
    return _shapes(cols, centre, weights)


def _wss_shapes(
    axis: TraceAxis,
    rbw_ghz: float,
    guard_ghz: FloatArray,
    edge_ghz: FloatArray,
    neighbours: npt.NDArray[np.bool_],
) -> _NoiseShapes:
    """WSS candidates ``(K,)``: passbands of the slot width minus ``guard_ghz`` at
    -3 dB, Gaussian edges of ``edge_ghz``, with the lower and upper neighbour's
    passband where ``neighbours`` ``(K, 2)`` says (merged: at most 1, as in a WSS)."""
    x, u, weights = _slot_points(axis)
    width, centre = axis.slot_width_ghz, axis.channel_ghz
    guard = guard_ghz[:, None, None]
    sigma = np.hypot(edge_ghz, rbw_ghz / math.sqrt(2.0 * math.pi))[:, None, None]
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
        return np.asarray(np.minimum(total, 1.0))

    t = transmission(x)
    cols = np.stack((t, np.ones_like(t), t * u[None], np.broadcast_to(u, t.shape)), axis=-1)
    t_centre = transmission(np.zeros((centre.size, 1)))[..., 0]
    zero = np.zeros_like(t_centre)
    centre_cols = np.stack((t_centre, np.ones_like(t_centre), zero, zero), axis=-1)
    return _shapes(cols, centre_cols, weights)


def _candidates(axis: TraceAxis, rbw_ghz: float) -> _NoiseShapes:
    """The shapes a trace chooses from (cached per axis and RBW): the smooth line,
    then the WSS grid :data:`_WSS_GUARD_GHZ` x :data:`_WSS_EDGE_GHZ`, every slot's
    neighbours with their passbands."""
    per_axis = _CANDIDATES.setdefault(axis, {})
    if rbw_ghz not in per_axis:
        guard, edge = _wss_grid()
        wss = _wss_shapes(axis, rbw_ghz, guard, edge, np.ones((guard.size, 2), bool))
        smooth = _smooth_shape(axis)
        per_axis[rbw_ghz] = _NoiseShapes(
            cols=np.concatenate((smooth.cols, wss.cols)),
            centre=np.concatenate((smooth.centre, wss.centre)),
            slot=np.concatenate((smooth.slot, wss.slot)),
        )
    return per_axis[rbw_ghz]


def _wss_grid() -> tuple[FloatArray, FloatArray]:
    """Guard and edge of each WSS candidate (candidate ``k + 1``)."""
    guard, edge = np.meshgrid(_WSS_GUARD_GHZ, _WSS_EDGE_GHZ, indexing="ij")
    return guard.ravel(), edge.ravel()


@dataclass(frozen=True, slots=True)
class _Fit:
    """Weighted least squares ``y = g shape + sum_m n_m col_m`` per candidate, trace and
    channel ``(K, N, C)``: coefficients ``(..., 1 + M)``, inverse normal matrix
    ``(..., 1 + M, 1 + M)``, weighted residual sum of squares, and the OSNR, signal
    and noise density at the centre it gives."""

    coef: FloatArray
    inv: FloatArray
    rss: FloatArray
    osnr_db: FloatArray
    signal_mw: FloatArray
    noise_psd: FloatArray

    def pick(self, k: IntArray) -> _Fit:
        """Candidate ``k`` ``(N, C)`` of every trace and channel, as a ``(1, N, C)`` fit."""
        n, c = np.indices(k.shape)
        return _Fit(
            self.coef[k, n, c][None],
            self.inv[k, n, c][None],
            self.rss[k, n, c][None],
            self.osnr_db[k, n, c][None],
            self.signal_mw[k, n, c][None],
            self.noise_psd[k, n, c][None],
        )


def _fit_reference(
    y: FloatArray,
    shape: FloatArray,
    w: FloatArray,
    shapes: _NoiseShapes,
    ref_n: FloatArray,
    slot_mw: FloatArray,
    rbw_ghz: float,
) -> _Fit:
    """Fit every candidate of ``shapes``; ``y``, ``shape``, ``w`` ``(N, C, L)``.

    The normal equations are sums over the points (``einsum``), so no
    ``(K, N, C, L)`` array is formed for candidates the traces share.  ``live -
    g ref = (n_live - g n_ref) T``: the reference's own noise ``g n_ref`` goes back
    on, in the fitted noise's shape, and the signal is the slot power minus that
    noise over the slot."""
    w2 = w * w
    ws, wy = w2 * shape, w2 * y
    cols = shapes.cols
    per_trace = cols.ndim == 5
    one = "kncl" if per_trace else "kcl"
    s_ss = (ws * shape).sum(axis=-1)  # (N, C)
    s_sn = np.einsum(f"ncl,{one}m->kncm", ws, cols)
    s_nn = np.einsum(f"ncl,{one}m,{one}q->kncmq", w2, cols, cols)
    k = s_sn.shape[0]
    top = np.concatenate(
        (np.broadcast_to(s_ss[None, ..., None], (k, *s_ss.shape, 1)), s_sn), axis=-1
    )
    gram = np.concatenate(
        (top[..., None, :], np.concatenate((s_sn[..., None], s_nn), axis=-1)), axis=-2
    )
    rhs = np.concatenate(
        (
            np.broadcast_to((wy * shape).sum(axis=-1)[None, ..., None], (k, *s_ss.shape, 1)),
            np.einsum(f"ncl,{one}m->kncm", wy, cols),
        ),
        axis=-1,
    )
    diag = np.einsum("...pp->...p", gram)  # a view: the ridge goes into gram
    diag += np.where(diag > 0, _RIDGE * diag, 1.0)
    inv = np.linalg.inv(gram)
    coef = np.einsum("...pq,...q->...p", inv, rhs)
    rss = np.maximum((wy * y).sum(axis=-1) - np.einsum("...p,...p->...", coef, rhs), 0.0)

    g, n = coef[..., 0], coef[..., 1:]
    fitted = np.einsum("...m,...m->...", n, shapes.centre)
    noise = fitted + g * ref_n
    with np.errstate(divide="ignore", invalid="ignore"):
        in_slot = np.einsum("...m,...m->...", n, shapes.slot) * (noise / fitted)
    signal = slot_mw - in_slot / rbw_ghz
    ok = (g > 0) & (fitted > 0) & (signal > 0)
    osnr = np.where(ok, osnr_db(signal, noise / rbw_ghz), np.nan)
    return _Fit(coef, inv, rss, np.asarray(osnr), np.asarray(signal), np.asarray(noise / rbw_ghz))


def _log_ratio_var(
    fit: _Fit, shapes: _NoiseShapes, n_points: IntArray, correlation: float
) -> FloatArray:
    """The fit's variance of ``ln g - ln noise(0)`` (the OSNR in nepers, up to the
    signal's small share of noise), from its covariance ``(K, N, C)``."""
    m = fit.coef.shape[-1]
    var = fit.rss / np.maximum(n_points - m, 1.0) * correlation
    centre = np.broadcast_to(shapes.centre, fit.coef[..., 1:].shape)
    e = np.concatenate((np.zeros_like(centre[..., :1]), centre), axis=-1)  # noise(0) = e . coef
    g = fit.coef[..., 0]
    n0 = np.einsum("...p,...p->...", e, fit.coef)
    vg = fit.inv[..., 0, 0]
    vn = np.einsum("...p,...pq,...q->...", e, fit.inv, e)
    cgn = np.einsum("...q,...q->...", fit.inv[..., 0, :], e)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(np.maximum(vg / g**2 + vn / n0**2 - 2 * cgn / (g * n0), 0.0) * var)


def _choose_shape(
    rss: FloatArray, n_points: IntArray, correlation: float
) -> tuple[IntArray, BoolArray]:
    """Per trace, the candidate noise shape that fits its channels best ``(N,)``, and
    the candidates it cannot tell from that one ``(K, N)``.

    A WSS treats every channel of the trace alike, so the shape is chosen for the
    whole trace, by the sum of the weighted residuals over its channels; channels
    that no candidate fits (a dark slot, whose "shape" is noise: best residual over
    :data:`_OUTLIER_RATIO` times the trace's median) do not vote.  A candidate is
    plausible when its residual sum exceeds the best by at most
    :data:`_PLAUSIBLE_CHI2` residual variances (inflated by the RBW's correlation of
    neighbouring points)."""
    best_c = rss.min(axis=0)  # (N, C)
    median = np.median(best_c, axis=-1, keepdims=True)
    votes = (best_c <= _OUTLIER_RATIO * median) & (n_points > 1 + _NOISE_COLUMNS)
    score = np.where(votes[None], rss, 0.0).sum(axis=-1)  # (K, N)
    dof = np.maximum(np.where(votes, n_points - 1 - _NOISE_COLUMNS, 0).sum(axis=-1), 1)
    sigma2 = score.min(axis=0) / dof  # the residual variance per point
    # Akaike: a WSS shape has one more column per channel and its guard and edge, so
    # it must explain the trace better than the smooth line by more than those would
    # by chance (about sigma2 each), twice over.
    extra = np.where(np.arange(score.shape[0]) == 0, 0.0, 1.0)[:, None]
    score = score + 2.0 * sigma2 * extra * (2.0 * votes.sum(axis=-1) + 2.0)
    lowest = score.min(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = (score - lowest) / (sigma2 * correlation)
    return np.asarray(score.argmin(axis=0)), np.asarray(delta <= _PLAUSIBLE_CHI2)


def _with_neighbours(
    axis: TraceAxis, rbw_ghz: float, best: IntArray, candidates: _NoiseShapes
) -> _NoiseShapes:
    """Four variants ``(4, N, ...)`` of each trace's chosen shape: its WSS passband
    with no, the lower, the upper or both neighbours' passbands (a dark neighbour's
    slot is blocked); a trace whose noise is smooth keeps its line in all four."""
    n = best.size
    guard, edge = _wss_grid()
    k = np.maximum(best - 1, 0)
    flags = np.array([[False, False], [True, False], [False, True], [True, True]])
    wss = _wss_shapes(
        axis, rbw_ghz, np.repeat(guard[k], 4), np.repeat(edge[k], 4), np.tile(flags, (n, 1))
    )
    smooth = (best == 0).reshape(1, n, 1, 1)

    def variants(of: FloatArray) -> FloatArray:  # (4N, ...) -> (4, N, ...)
        return of.reshape(n, 4, *of.shape[1:]).swapaxes(0, 1)

    return _NoiseShapes(
        cols=np.where(smooth[..., None], candidates.cols[:1, None], variants(wss.cols)),
        centre=np.where(smooth, candidates.centre[:1], variants(wss.centre)[:, :, 0]),
        slot=np.where(smooth, candidates.slot[:1], variants(wss.slot)[:, :, 0]),
    )


def _pick_shapes(shapes: _NoiseShapes, k: IntArray) -> _NoiseShapes:
    """Variant ``k`` ``(N, C)`` of ``(4, N, ...)`` shapes, as one ``(1, N, ...)`` candidate."""
    n, c = np.indices(k.shape)
    return _NoiseShapes(
        cols=shapes.cols[k, n, c][None],
        centre=shapes.centre[k, n, c][None],
        slot=shapes.slot[k, n, c][None],
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
    slot is chosen per trace (:func:`_choose_shape`) among a smooth line (no ROADM
    filter) and WSS passbands (:func:`wss_passband_through_rbw`) of the slot and its
    neighbours; then per channel whether each neighbour's passband is there.  The
    live noise density is the fitted noise at the centre plus ``g`` times the
    reference's own, the signal the slot power minus that noise over the slot.

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

    candidates = _candidates(axis, rbw_ghz)
    every = _fit_reference(y, shape, w, candidates, ref_n, slot_mw, rbw_ghz)
    best, plausible = _choose_shape(every.rss, n_points, correlation)
    variants = _with_neighbours(axis, rbw_ghz, best, candidates)
    fits = _fit_reference(y, shape, w, variants, ref_n, slot_mw, rbw_ghz)
    variant = fits.rss.argmin(axis=0)  # (N, C)
    fit = fits.pick(variant)
    chosen = _pick_shapes(variants, variant)
    osnr = fit.osnr_db[0]
    fit_var = _log_ratio_var(fit, chosen, n_points, correlation)[0]
    # The shapes the trace cannot tell from the chosen one.
    # (judged among the candidates, which all give every neighbour its passband)
    at_best = every.osnr_db[best, np.arange(best.size)]
    spread = np.where(plausible[..., None], np.abs(every.osnr_db - at_best[None]), 0.0)
    # The same shape over the inner part of the slot: a disagreement beyond twice
    # what the inner fit's own noise explains (its variance less the full fit's).
    inner = np.abs(axis.slot_offset_ghz) <= _INNER_FRACTION * axis.slot_width_ghz[:, None] / 2
    w_inner = np.where(inner[None], w, 0.0)
    fit_in = _fit_reference(y, shape, w_inner, chosen, ref_n, slot_mw, rbw_ghz)
    var_in = _log_ratio_var(fit_in, chosen, (w_inner > 0).sum(axis=-1), correlation)[0]
    allowed = 2.0 * _DB_PER_NEPER * np.sqrt(np.maximum(var_in - fit_var, 0.0))
    moved = np.maximum(np.abs(fit_in.osnr_db[0] - osnr) - allowed, 0.0)
    unc = np.sqrt(_DB_PER_NEPER**2 * fit_var + np.nanmax(spread, axis=0) ** 2 + moved**2)
    return CompanionResult(
        signal_mw=fit.signal_mw[0],
        noise_psd_mw_per_ghz=fit.noise_psd[0],
        osnr_db=osnr,
        uncertainty_db=np.asarray(np.where(np.isfinite(osnr), unc, np.nan)),
    )
