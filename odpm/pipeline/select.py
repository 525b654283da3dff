"""Which OSNR a channel gets, and whether it is present at all, across methods.

Order of trust, per channel (a channel gets the first that is credible):

1. ``signal_off``, then ``reference`` (:mod:`odpm.pipeline.companions`,
   :mod:`odpm.pipeline.reference`): a second trace measures the noise under the
   channel, or the channel's own shape; applied last in
   :func:`~odpm.pipeline.interpolation.analyse_traces`, overriding the rest;
2. ``interpolation`` (IEC 61280-2-9) where its noise windows are flat *and* no
   shoulder says otherwise (:func:`check_interpolation`): it is exact there and needs
   no model;
3. ``shoulder`` (:mod:`odpm.pipeline.shoulder`): the noise read inside the channel's
   own WSS passband, beside it, when its uncertainty is at most
   ``fit_max_uncertainty_db``; it needs no model of the signal, only that the
   shoulders are visible (narrow channels);
4. ``fit``: the raised-cosine model fit (:mod:`odpm.pipeline.fit`) when its uncertainty
   is at most ``fit_max_uncertainty_db``, nothing in the trace shows ROADM carving
   (a dark slot's floor, :mod:`odpm.pipeline.carving`; shoulders above the midpoints,
   :func:`check_interpolation`; the trace dipping below the fitted pedestal between
   channels, :func:`carved_between_channels`) and, with ``line_filtering = "auto"``,
   something shows the ASE uncarved (:func:`~odpm.pipeline.carving.level_dark_slots`,
   :func:`level_between_channels`, :attr:`Check.confirmed`);
5. no number and ``noise_unresolved``.

A confidently wrong number is the outcome to avoid, so a fit that cannot tell signal
from noise (its uncertainty grows with the shape sensitivity) gives none, and an
interpolated OSNR whose midpoint noise disagrees with the shoulders is dropped.

Presence: a channel is present when its slot power passes the absolute threshold and
its signal stands ``detection_relative_db`` above the noise by *either* estimate: the
interpolated noise (today's test) or the fit's own amplitude against the fit's noise.
A wide channel that fills its slot puts its own signal at the midpoints, so the
interpolated "noise" equals its signal and the first test alone would call it dark;
the fit separates the two.  A spectrum wider than its slot defeats the fit too (its
neighbours overlap it); such a slot is still present when its central half stands
:data:`~odpm.pipeline.formulas.CENTRE_RISE_DB` above its edges
(:func:`~odpm.pipeline.interpolation.analyse_traces`), without an interpolated OSNR.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from odpm.models import FloatArray, OsnrMethod, Quality
from odpm.pipeline.axis import TraceAxis
from odpm.pipeline.carving import carved_by_roadm, dark_floor, level_dark_slots
from odpm.pipeline.fit import FitResult, fit_raised_cosine
from odpm.pipeline.formulas import UNRESOLVED_CURVATURE_DB, BoolArray, window_curvature_db
from odpm.units import mw_to_dbm


@dataclass(frozen=True, slots=True)
class Choice:
    """Per channel ``(N, C)``: the verdicts after the in-band methods."""

    present: BoolArray
    quality: npt.NDArray[np.uint8]
    osnr_db: FloatArray
    method: npt.NDArray[np.uint8]
    uncertainty_db: FloatArray
    signal_mw: FloatArray
    noise_psd: FloatArray
    #: Per trace ``(N,)``: the fit stage's single-trace evidence of ROADM carving
    #: (``line_filtering = "auto"`` only).  A WSS carves every channel's noise, so the
    #: caller drops the trace's interpolated OSNRs too.
    carving_seen: BoolArray
    #: Per trace ``(N,)``: with ``line_filtering = "auto"``, whether something in the
    #: trace shows the ASE uncarved (a dark slot or a flat gap level with the fitted
    #: pedestals, shoulders that confirm the midpoints); True for ``"none"``.
    uncarved_seen: BoolArray


def choose_inband(
    axis: TraceAxis,
    p: npt.NDArray[np.float32],
    rbw_ghz: float,
    present: BoolArray,
    quality: npt.NDArray[np.uint8],
    osnr: FloatArray,
    slot_mw: FloatArray,
    carved_hint: BoolArray | None = None,
    uncarved_hint: BoolArray | None = None,
) -> Choice:
    """Combine the verdicts so far (``present``, ``quality``, ``osnr``, from
    interpolation and the shoulders) with the fit.  ``carved_hint`` ``(N,)``: traces
    already known to be ROADM-carved (no fitted OSNR is credible there);
    ``uncarved_hint`` ``(N,)``: traces where the shoulders confirmed the midpoints
    (evidence that the ASE is not carved, :attr:`Check.confirmed`)."""
    cfg = axis.config
    fit = fit_raised_cosine(axis, p, rbw_ghz)
    noise_level = fit.noise_psd_mw_per_ghz * rbw_ghz
    ratio = 10 ** (cfg.detection_relative_db / 10) - 1.0  # signal over noise at the peak
    with np.errstate(invalid="ignore"):
        lit_by_fit = (
            (fit.signal_mw > 0) & (noise_level > 0) & (fit.signal_peak >= ratio * noise_level)
        )
    above = mw_to_dbm(slot_mw) >= cfg.detection_threshold_dbm
    now_present = present | (above & lit_by_fit)
    credible = np.isfinite(fit.osnr_db) & (fit.uncertainty_db <= cfg.fit_max_uncertainty_db)
    # A fitted spectrum wider than its slot, (1 + roll-off) x rate > width, overlaps its
    # neighbours' spectra: signal and pedestal can no longer be told apart (measured on
    # the generator: 63 GBd at roll-off 0.35 on 75 GHz, 128 GBd on 150 GHz, uncarved,
    # 8-9.6 dB errors at a small claimed uncertainty).
    occupied_ghz = (1.0 + fit.rolloff) * fit.symbol_rate_gbd
    credible &= occupied_ghz <= np.broadcast_to(axis.slot_width_ghz, occupied_ghz.shape[-1:])
    # Where carving is likely, no fitted OSNR of that trace is credible.
    fitted = np.isfinite(fit.osnr_db) & (fit.uncertainty_db <= 3 * cfg.fit_max_uncertainty_db)
    seen = np.zeros(p.shape[0], dtype=bool)
    uncarved = np.zeros(p.shape[0], dtype=bool)
    if cfg.line_filtering == "roadm":
        # Declared behind ROADM filters: a channel filling its slot hides the floor that
        # would show the carving, so no fitted OSNR can be trusted (odpm.config).
        carved = np.ones(p.shape[0], dtype=bool)
    elif cfg.line_filtering == "none":
        # Declared unfiltered: only evidence the data itself gives (the shoulders).
        carved = np.zeros(p.shape[0], dtype=bool)
        uncarved = ~carved
    else:
        floor = dark_floor(axis, p, rbw_ghz)
        gaps = gap_thirds(axis, p)
        carved = _carving_heuristics(axis, floor, gaps, now_present, noise_level, fit, fitted)
        seen = carved.copy()
        # No evidence either way is no licence: a line with every slot lit by wide
        # channels hides the notches a WSS cuts, and the fit then reads them as a lower
        # pedestal (measured on the generator's full sweep: 29 such cases 1-4.5 dB too
        # high at a small claimed uncertainty).  So a fitted OSNR also needs the trace
        # to show the ASE uncarved somewhere: a dark slot level with its neighbours'
        # pedestals, a flat gap level with them, or a narrow channel whose shoulders
        # agree with its midpoints.
        uncarved = level_dark_slots(floor, now_present, noise_level, fitted)
        uncarved |= level_between_channels(gaps, now_present, noise_level, fitted)
        if uncarved_hint is not None:
            uncarved |= uncarved_hint
        carved |= ~uncarved
    if carved_hint is not None:
        carved |= carved_hint
    credible &= ~carved[:, None]
    use_fit = now_present & np.isnan(osnr) & credible
    new_osnr = np.where(use_fit, fit.osnr_db, osnr)
    new_quality = np.where(
        now_present,
        np.where(np.isnan(new_osnr), Quality.NOISE_UNRESOLVED, Quality.OK),
        Quality.DARK,
    ).astype(np.uint8)
    method = np.where(use_fit, OsnrMethod.FIT, OsnrMethod.NONE).astype(np.uint8)
    return Choice(
        present=now_present,
        quality=new_quality,
        osnr_db=new_osnr,
        method=method,
        uncertainty_db=np.where(use_fit, fit.uncertainty_db, np.nan),
        signal_mw=fit.signal_mw,
        noise_psd=fit.noise_psd_mw_per_ghz,
        carving_seen=seen,
        uncarved_seen=uncarved,
    )


def _carving_heuristics(
    axis: TraceAxis,
    floor: FloatArray,
    gaps: FloatArray,
    present: BoolArray,
    noise_level: FloatArray,
    fit: FitResult,
    fitted: BoolArray,
) -> BoolArray:
    """Per trace ``(N,)``: single-trace evidence of ROADM carving against the fit
    (``line_filtering = "auto"``): ROADM-carved noise fools the fit without showing in
    its residual; a dark slot whose floor lies well below a fitted neighbour's pedestal
    is the evidence (odpm.pipeline.carving), or the trace between two fitted channels
    below their pedestals."""
    cfg = axis.config
    carved = carved_by_roadm(floor, present, noise_level, fitted)
    carved |= carved_between_channels(gaps, present, noise_level, fitted)
    # A dark slot's floor far below a neighbour's pedestal is carving even when that
    # neighbour's fit is too uncertain for the fine test above: a fit claiming 1-4 dB
    # cannot be 10 dB off in its noise (simulator, 40 dB WSS depth: floor -32 dB
    # below neighbours fitted at 1.2-1.3 dB, whose fitted OSNRs were 4.2-4.7 dB high).
    loose = np.isfinite(fit.osnr_db) & (fit.uncertainty_db <= 10 * cfg.fit_max_uncertainty_db)
    carved |= carved_dark_slots(floor, present, noise_level, ~loose, DEEP_CARVED_RATIO)
    return carved


#: Interpolation and shoulder noise may differ by this much beyond their claimed
#: uncertainties before the midpoints count as carved or contaminated (dB).
AGREEMENT_MARGIN_DB = 0.2


@dataclass(frozen=True, slots=True)
class Check:
    """Interpolation checked against the shoulders: per channel ``(N, C)`` whether the
    interpolated OSNR stands, per trace ``(N,)`` whether the midpoints read carved
    noise (the shoulders, inside a WSS passband, lie above them)."""

    interpolation_ok: BoolArray
    carved: BoolArray
    #: Per trace ``(N,)``: some channel's resolved midpoint noise agrees with its
    #: shoulders, and none disagrees below them: the ASE there is not carved.
    confirmed: BoolArray


def check_interpolation(
    present: BoolArray,
    osnr: FloatArray,
    noise_psd: FloatArray,
    uncertainty_db: FloatArray,
    shoulder_noise_psd: FloatArray,
    shoulder_uncertainty_db: FloatArray,
    carved_elsewhere: BoolArray | None = None,
) -> Check:
    """Use the shoulder noise to *check* interpolation.

    Where both exist and the midpoint noise differs from the shoulder noise by more
    than both uncertainties plus :data:`AGREEMENT_MARGIN_DB`, the midpoints do not hold
    the noise under the channel: below the shoulders they are carved by a WSS (and a
    WSS carves every channel of the trace, so then no interpolated OSNR of that trace
    stands, and no fitted one either); above, a neighbour's skirt reaches them.  A
    shallow carving (3 dB at 6.25 GHz RBW) leaves the midpoint windows flat, so
    interpolation's own flatness test cannot see it: this check does.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        diff_db = 10 * np.log10(noise_psd / shoulder_noise_psd)
    tolerance = AGREEMENT_MARGIN_DB + np.nan_to_num(uncertainty_db) + shoulder_uncertainty_db
    compared = present & np.isfinite(diff_db) & np.isfinite(tolerance)
    below = compared & (diff_db < -tolerance)
    above = compared & (diff_db > tolerance)
    carved = below.any(axis=-1)
    drop = carved if carved_elsewhere is None else carved | carved_elsewhere
    ok = np.isfinite(osnr) & ~below & ~above & ~drop[:, None]
    confirmed = (compared & np.isfinite(osnr) & ~below & ~above).any(axis=-1) & ~drop
    return Check(interpolation_ok=ok, carved=carved, confirmed=confirmed)


#: The trace at the midpoint between two lit channels below this fraction of the
#: lower of their fitted noise levels (-0.15 dB) is carving.  Measured on the
#: first-principles generator (every slot lit, the fits credible): uncarved
#: -0.07..+2.4 dB over 28-40 GBd, roll-off 0.05-0.35, RBW 2.5-12.5 GHz (the trace is
#: signal plus noise, never below the noise); WSS carving of 3-15 dB: the lowest pair
#: of each trace at -0.19..-0.38 dB, with fitted OSNRs 2-4.5 dB too high.
CARVED_GAP_RATIO = 10 ** (-0.15 / 10)


def carved_between_channels(
    gaps: FloatArray,
    lit: BoolArray,
    noise_level: FloatArray,
    credible: BoolArray,
) -> BoolArray:
    """Per trace ``(N,)``: does the trace's mean over the middle third of a noise
    window (``gaps``, :func:`gap_thirds`; about 2 GHz around the midpoint between two
    lit channels) fall below :data:`CARVED_GAP_RATIO` x the lower of the two fitted
    noise levels (trace units), where both fits are credible?

    Why: with every slot lit there is no dark slot to show the carved floor
    (:mod:`odpm.pipeline.carving`), and the fit explains the notch a WSS cuts between
    two passbands by a lower pedestal and slightly wider signals, reporting OSNRs
    several dB too high at a small uncertainty.  But the fitted pedestal is linear from
    neighbour to neighbour and cannot follow the notch all the way: the trace at the
    notch stays a little below it, while on an uncarved line the trace is signal plus
    noise and never below the noise.  The mean over ~2 GHz (not the minimum point)
    keeps a noisy trace's scatter from looking like a notch."""
    middle = gaps[..., 1]
    pair, level = _trusted_pairs(lit, noise_level, credible)
    with np.errstate(invalid="ignore"):
        return np.asarray((pair & (middle < CARVED_GAP_RATIO * level)).any(axis=-1))


#: A flat gap's middle third at most this far above the lower fitted noise level of
#: the two channels beside it (+0.2 dB) is the ASE seen uncarved between them.
LEVEL_GAP_RATIO = 10 ** (0.2 / 10)


def level_between_channels(
    gaps: FloatArray,
    lit: BoolArray,
    noise_level: FloatArray,
    credible: BoolArray,
) -> BoolArray:
    """Per trace ``(N,)``: positive evidence that the ASE is not carved: between two
    lit channels whose fits are credible, a noise window (``gaps``, :func:`gap_thirds`)
    that is flat (:func:`~odpm.pipeline.formulas.window_curvature_db` within
    :data:`~odpm.pipeline.formulas.UNRESOLVED_CURVATURE_DB`) and level with the fitted
    pedestals (its middle third within :data:`CARVED_GAP_RATIO` ..
    :data:`LEVEL_GAP_RATIO` of the lower one).

    Why: the noise is then visible at the midpoint, with no notch and no skirt, at the
    level the fits put under the channels.  Measured on the generator (every slot lit,
    15 such cases uncarved, 34 carved by 3-15 dB): uncarved gaps of 28-63 GBd at 2.5
    and 6.25 GHz RBW pass at -0.05..+0.17 dB; of the carved traces' flat gaps, one
    passed the flatness test at all, at +0.94 dB.  Through 12.5 GHz the skirts fill
    every gap and nothing passes: such a line gets no fitted number unless it is
    declared unfiltered or a second trace is given."""
    flat = window_curvature_db(gaps) <= UNRESOLVED_CURVATURE_DB
    pair, level = _trusted_pairs(lit, noise_level, credible)
    middle = gaps[..., 1]
    with np.errstate(invalid="ignore"):
        level_with = (middle >= CARVED_GAP_RATIO * level) & (middle <= LEVEL_GAP_RATIO * level)
    return np.asarray((pair & flat & level_with).any(axis=-1))


def gap_thirds(axis: TraceAxis, p: npt.NDArray[np.float32]) -> FloatArray:
    """Mean trace level ``(N, C - 1, 3)`` over the thirds of each noise window between
    two channels (trace units; the outer windows beyond the first and last channel
    are left out)."""
    n, c = p.shape[0], axis.n_channels
    third_mw = axis.thirds.integrate(np.take(p, axis.thirds.idx, axis=1))
    width = axis.range_width_ghz[c:-1].reshape(c + 1, 3)
    return np.asarray((third_mw.reshape(n, c + 1, 3) / width)[:, 1:-1])


def _trusted_pairs(
    lit: BoolArray, noise_level: FloatArray, credible: BoolArray
) -> tuple[BoolArray, FloatArray]:
    """Per gap ``(N, C - 1)``: both neighbours lit with a credible positive fitted level,
    and the lower of their two levels."""
    trusted = lit & credible & (noise_level > 0)
    pair = trusted[:, :-1] & trusted[:, 1:]
    return pair, np.minimum(noise_level[:, :-1], noise_level[:, 1:])


#: A dark slot's floor this far below a lit neighbour's interpolated noise level
#: (-6 dB) shows the midpoints carved.  Loose on purpose: the neighbour's midpoint
#: windows may be unresolved, and an uncarved 10 GBd neighbour at 32 dB OSNR through a
#: 12.5 GHz RBW lifts them by ~2 dB with its skirt; carving of 10 dB or more at
#: 12.5 GHz RBW puts the floor 10-13.5 dB below (measured on the generator).
CARVED_DARK_RATIO = 10 ** (-6.0 / 10)
#: The same against a loosely trusted fitted pedestal (-10 dB).
DEEP_CARVED_RATIO = 10 ** (-10.0 / 10)


def carved_dark_slots(
    floor: FloatArray,
    lit: BoolArray,
    noise_level: FloatArray,
    wide: BoolArray,
    ratio: float = CARVED_DARK_RATIO,
) -> BoolArray:
    """Per trace ``(N,)``: a dark slot's ``floor`` below :data:`CARVED_DARK_RATIO` x a
    narrow lit neighbour's interpolated ``noise_level`` (trace units).  ``wide``
    ``(N, C)`` marks channels whose own signal reaches the midpoints (their
    "noise" there is signal, so they are no evidence).  Also used against the fit with
    :data:`DEEP_CARVED_RATIO` (see :func:`choose_inband`)."""
    dark = ~lit
    level = np.where(lit & ~wide & (noise_level > 0), noise_level, np.nan)
    pad = np.full_like(level[:, :1], np.nan)
    lo = np.concatenate((pad, level[:, :-1]), axis=1)
    hi = np.concatenate((level[:, 1:], pad), axis=1)
    with np.errstate(invalid="ignore"):
        below = (floor < ratio * lo) | (floor < ratio * hi)
    return np.asarray((dark & below).any(axis=-1))
