"""OSNR by interpolation (IEC 61280-2-9) over a batch of traces sharing one axis."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from odpm.models import FloatArray, OsnrMethod, Quality
from odpm.pipeline.axis import TraceAxis, _weighted_sums, channel_crossings_ghz
from odpm.pipeline.carving import dark_floor, mostly_curved_between_narrow, nearest_level
from odpm.pipeline.companions import signal_off
from odpm.pipeline.formulas import (
    UNRESOLVED_CURVATURE_DB,
    BoolArray,
    _flatness_db,
    _nanmin_rows,
    osnr_db,
    signal_power_mw,
    tilt_db,
    window_curvature_db,
)
from odpm.pipeline.presence import (
    INBAND_REACH_SLOTS,
    ase_only_passbands,
    stands_above_dips,
    stands_above_edges,
)
from odpm.pipeline.reference import reference
from odpm.pipeline.select import carved_dark_slots, check_interpolation, choose_inband
from odpm.pipeline.shoulder import shoulder_noise
from odpm.units import LN10_OVER_10, mw_to_dbm

# --------------------------------------------------------------- the analysis

#: Every this-many-th channel is a probe for ROADM carving when interpolation
#: resolves every present channel (see analyse_traces).
_PROBE_STRIDE = 8


@dataclass(frozen=True, slots=True)
class TraceAnalysis:
    """Results of :func:`analyse_traces`: per-channel arrays ``(N, C)``, per-scan ``(N,)``."""

    present: BoolArray
    quality: npt.NDArray[np.uint8]
    power_dbm: FloatArray
    signal_power_dbm: FloatArray
    osnr_db: FloatArray
    offset_ghz: FloatArray
    noise_psd_mw_per_ghz: FloatArray
    total_power_dbm: FloatArray
    lit_channels: npt.NDArray[np.int64]
    tilt_db: FloatArray
    flatness_db: FloatArray
    min_osnr_db: FloatArray
    #: :class:`~odpm.models.OsnrMethod` of each OSNR (``NONE`` where there is none).
    osnr_method: npt.NDArray[np.uint8]
    #: One-sigma uncertainty of each OSNR (dB), NaN where there is none.
    osnr_uncertainty_db: FloatArray


def _linear_trace(axis: TraceAxis, power_dbm: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """dBm trace(s) -> linear mW, float32, in the trace's own point order, zero-padded
    to whole blocks of :data:`_BLOCK_POINTS`.  Float32 because exp in float32 is
    several times faster than in float64; every sum over points ends in float64."""
    p = np.asarray(power_dbm)
    if p.ndim == 1:
        p = p[None, :]
    k = axis.raw_frequency_thz.size
    if p.ndim != 2 or p.shape[1] != k:
        raise ValueError(f"power_dbm has shape {np.shape(power_dbm)}; expected ({k},) or (N, {k})")
    lin = np.empty((p.shape[0], axis.total_weights.size), dtype=np.float32)
    lin[:, k:] = 0.0
    points = lin[:, :k]
    np.multiply(p, np.float32(LN10_OVER_10), out=points)
    np.exp(points, out=points)
    if axis.gain is not None:
        points *= axis.gain
    return lin


def analyse_traces(
    axis: TraceAxis,
    power_dbm: npt.ArrayLike,
    rbw_ghz: float,
    *,
    inband: bool = True,
    noise_dbm: npt.ArrayLike | None = None,
    reference_dbm: npt.ArrayLike | None = None,
) -> TraceAnalysis:
    """Analyse ``N`` traces sharing ``axis`` (``power_dbm`` is ``(N, K)`` or ``(K,)``).

    Per channel (IEC 61280-2-9 interpolation, see the module docstring):

    * slot power ``P = sum p_k df_k / RBW`` over centre +/- slot/2 (exact integral
      of the piecewise-linear trace);
    * noise PSD ``N(m) = mean(p)/RBW`` over a ``noise_window_ghz`` window at each
      midpoint (``midpoint``), or the minimum point within half a slot of it
      (``pit``, the AQ6370 PIT variant), linearly interpolated to the centre;
    * signal ``S = P - N(fc) x slot`` and ``OSNR = S / (N(fc) x 12.5 GHz)``;
    * offset = midpoint of the -3 dB points of the signal (half way between the
      noise level and the peak, crossings interpolated) minus the grid centre;
    * present when ``P >= detection_threshold_dbm`` and the peak stands
      ``detection_relative_db`` above the noise level in the trace, or the mean of
      the slot's central half stands
      :data:`~odpm.pipeline.formulas.CENTRE_RISE_DB` above it (a spectrum wider
      than its slot, whose neighbours fill the midpoints), or above the dark
      slots near it (a line packed near the Nyquist limit); not present when the
      midpoints are carved and the peak does not clear the in-band noise beside the
      neighbouring channels (a failed transmitter's open passband): see
      :mod:`odpm.pipeline.presence`;
    * ``NOISE_UNRESOLVED`` when a neighbouring noise window is not flat (see
      :data:`UNRESOLVED_CURVATURE_DB`) or the signal comes out non-positive; OSNR is
      then NaN, because interpolation would report a number nobody should trust.

    Then, unless ``inband`` is False or the configuration turns them off, the in-band
    methods (:func:`~odpm.pipeline.select.choose_inband`) give unresolved channels an
    OSNR where their fit is credible, and make presence independent of how the noise
    was estimated.

    With a signal-off trace (``noise_dbm``, same axis) or a reference trace at high
    OSNR (``reference_dbm``), those methods (:mod:`odpm.pipeline.companions`,
    :mod:`odpm.pipeline.reference`) take
    precedence for every present channel where they are credible.
    """
    if not (rbw_ghz > 0 and math.isfinite(rbw_ghz)):
        raise ValueError(f"rbw_ghz must be a positive number, got {rbw_ghz}")
    cfg = axis.config
    c = axis.n_channels
    p = _linear_trace(axis, power_dbm)
    n = p.shape[0]

    total_mw = _weighted_sums(p.reshape(n, *axis.total_weights.shape), axis.total_weights)
    total_mw = total_mw.sum(axis=-1)
    if not np.all(np.isfinite(total_mw)):
        # Rare path: NaN/inf points carry no usable power; count them as none.
        p = np.where(np.isfinite(p), p, np.float32(0.0))
        total_mw = _weighted_sums(p.reshape(n, *axis.total_weights.shape), axis.total_weights)
        total_mw = total_mw.sum(axis=-1)
    total_mw /= rbw_ghz
    window = np.take(p, axis.slots.idx, axis=1)  # (N, C, L + 2)
    slot_mw = axis.slots.integrate(window) / rbw_ghz
    third_mw = axis.thirds.integrate(np.take(p, axis.thirds.idx, axis=1)) / rbw_ghz
    thirds = (third_mw / axis.range_width_ghz[c:-1]).reshape(n, c + 1, 3)

    if cfg.noise_method == "pit":
        mid_psd = np.take(p, axis.pit_idx, axis=1).min(axis=-1).astype(np.float64)
        mid_psd /= rbw_ghz
    else:
        mid_psd = thirds.mean(axis=-1)
    t = axis.centre_t
    noise_psd = mid_psd[:, :-1] * (1 - t) + mid_psd[:, 1:] * t

    # Flatness of each noise window: outer thirds against the middle one.
    dev = window_curvature_db(thirds)
    unresolved_mid = ~(dev <= UNRESOLVED_CURVATURE_DB)
    unresolved = unresolved_mid[:, :-1] | unresolved_mid[:, 1:]

    signal_mw = signal_power_mw(slot_mw, noise_psd, axis.slot_width_ghz)
    slot_dbm = mw_to_dbm(slot_mw)

    # Peaks and -3 dB points within each slot.
    g = window[..., 1:-1]  # (N, C, L)
    peak = g.max(axis=-1).astype(np.float64)
    noise_level = noise_psd * rbw_ghz
    # Present: above the absolute threshold, and either the peak clears the noise by
    # the configured margin, or the slot's centre stands above its edges (a spectrum
    # wider than its slot puts its neighbours' signal at the midpoints, where the
    # first test takes it for noise: see CENTRE_RISE_DB).
    # Only the first test says the midpoints hold noise: a channel present by the
    # second alone gets no interpolated OSNR (near-Nyquist neighbours, 130 GBd on
    # 150 GHz, sum to a flat level at the midpoint that reads as a floor: 7-12 dB low).
    centre_level = np.einsum("ncl,cl->nc", g, axis.core_weights).astype(np.float64)
    relative = 10 ** (cfg.detection_relative_db / 10)
    slot_above = slot_dbm >= cfg.detection_threshold_dbm
    clear = peak >= noise_level * relative
    present = slot_above & (clear | stands_above_edges(centre_level, noise_level, peak))
    # A line packed near the Nyquist limit: a lit slot is flat with its edges; it is
    # told from the ASE by the dark slots between such channels (presence.py).
    present |= slot_above & stands_above_dips(
        centre_level, noise_level, present, cfg.detection_relative_db
    )
    unresolved |= present & ~clear
    # Each channel's half-maximum crossings: its offset, and its -3 dB width where a
    # test below needs it.
    rise, fall, _ = channel_crossings_ghz(g, peak, noise_level, axis)
    offset = _centre_offset_ghz(rise, fall)

    bad_signal = ~(signal_mw > 0)
    quality = np.where(
        present,
        np.where(unresolved | bad_signal, Quality.NOISE_UNRESOLVED, Quality.OK),
        Quality.DARK,
    ).astype(np.uint8)
    osnr = np.where(present & ~unresolved, osnr_db(signal_mw, noise_psd), np.nan)
    method = np.where(np.isnan(osnr), OsnrMethod.NONE, OsnrMethod.INTERPOLATION).astype(np.uint8)
    # The noise is known no better than its windows are flat.
    unc = np.where(np.isnan(osnr), np.nan, np.maximum(dev[:, :-1], dev[:, 1:]))
    # The in-band methods only matter where interpolation left a present channel
    # without an OSNR or called a channel dark beside a window it could not resolve;
    # a trace of resolved narrow channels keeps interpolation's speed.
    carved = None
    confirmed = None
    ase_only = np.zeros_like(present)
    if inband and cfg.inband_methods:
        # The shoulders check interpolation and stand in where it fails (select.py).
        # A WSS carves every channel of a trace, so while interpolation resolves every
        # present channel a few probe channels suffice to look for carving (the hot
        # path of a clean narrow-channel trace stays close to interpolation's cost);
        # all channels get their shoulders once one is needed.
        roadm = cfg.line_filtering == "roadm"
        failing = roadm or (present & np.isnan(osnr)).any()
        probe = None if failing else np.arange(0, c, _PROBE_STRIDE)
        sh = shoulder_noise(axis, p, rbw_ghz, probe)
        if probe is not None:
            probe_check = check_interpolation(
                present, osnr, noise_psd, unc, sh.noise_psd_mw_per_ghz, sh.uncertainty_db
            )
            if (~probe_check.interpolation_ok[:, probe] & present[:, probe]).any():
                sh = shoulder_noise(axis, p, rbw_ghz)
        # A dark slot's floor below a resolved neighbour's midpoint noise: carving.
        floor_carved = None
        width_ghz = _half_max_width_ghz(rise, fall)
        half_slot_ghz = np.asarray(axis.slot_width_ghz) / 2
        if not present.all():  # a dark slot may show the carved floor
            # Wide: the -3 dB width (half the slot) reaches past a quarter of the slot.
            wide = width_ghz > half_slot_ghz
            floor = dark_floor(axis, p, rbw_ghz)
            floor_carved = carved_dark_slots(floor, present, noise_level, wide)
        check = check_interpolation(
            present,
            osnr,
            noise_psd,
            unc,
            sh.noise_psd_mw_per_ghz,
            sh.uncertainty_db,
            floor_carved,
        )
        # Shoulders count only when the channel's peak stands clear of them: a channel
        # packed at the Nyquist limit has none, and what the shoulder search finds beside
        # it is its neighbours' flat signal (read 1 dB under its own peak, at a claimed
        # 0.1 dB: an OSNR some 30 dB low once such a channel is present).
        shoulder_level = sh.noise_psd_mw_per_ghz * rbw_ghz
        with np.errstate(invalid="ignore"):
            clear_of_shoulders = peak >= shoulder_level * relative
        shoulders_seen = (
            np.isfinite(sh.osnr_db)
            & (sh.uncertainty_db <= cfg.fit_max_uncertainty_db)
            & clear_of_shoulders
        )
        # A failed transmitter behind a ROADM: its passband's ASE stands above the
        # carved midpoints; against the noise its neighbours' shoulders show, it is dark.
        ase_only = ase_only_passbands(
            peak,
            noise_level,
            nearest_level(shoulder_level, present & shoulders_seen, INBAND_REACH_SLOTS),
            cfg.detection_relative_db,
        )
        present = present & ~ase_only
        interpolation_ok = check.interpolation_ok
        carved = check.carved
        # Cheap test first (clean traces skip the edge search): most windows between lit
        # channels bent; then among narrow channels only (carving.py).
        bent = mostly_curved_between_narrow(unresolved_mid, present)
        if cfg.line_filtering == "auto" and bent.any():
            narrow = present & (width_ghz <= half_slot_ghz)
            suspect = mostly_curved_between_narrow(unresolved_mid, narrow)
            interpolation_ok = interpolation_ok & ~suspect[:, None]
            carved = carved | suspect
        if roadm:
            # Behind ROADM filters the midpoints may be carved: interpolation stands only
            # where the noise beside the channel was seen and agrees with it.
            interpolation_ok = interpolation_ok & shoulders_seen
        use_sh = present & ~interpolation_ok & shoulders_seen
        osnr = np.where(interpolation_ok, osnr, np.where(use_sh, sh.osnr_db, np.nan))
        osnr = np.where(present, osnr, np.nan)
        signal_mw = np.where(use_sh, sh.signal_mw, signal_mw)
        noise_psd = np.where(use_sh, sh.noise_psd_mw_per_ghz, noise_psd)
        unc = np.where(use_sh, sh.uncertainty_db, np.where(np.isnan(osnr), np.nan, unc))
        method = np.where(
            use_sh,
            OsnrMethod.SHOULDER,
            np.where(np.isnan(osnr), OsnrMethod.NONE, method),
        ).astype(np.uint8)
        quality = np.where(
            present,
            np.where(np.isnan(osnr), Quality.NOISE_UNRESOLVED, Quality.OK),
            Quality.DARK,
        ).astype(np.uint8)
        confirmed = check.confirmed & ~carved
    needs_inband = (present & np.isnan(osnr)) | (~present & unresolved & slot_above)
    # Through an RBW wider than the noise window, a WSS notch at the midpoint is
    # smoothed wider than the window, which then looks flat, and the shoulders beside
    # a narrow channel are not resolved: nothing above can see a shallow carving, and
    # the midpoints read it as the noise (10 GBd behind a WSS carving 2-6 dB, guard
    # 4-10 GHz, through 10-12.5 GHz: interpolated up to 3 dB high at quality OK).  So
    # there, as for a fitted OSNR, an interpolated one needs the trace to show the ASE
    # uncarved somewhere (select.choose_inband), unless the line is declared.
    notch_hidden = cfg.line_filtering == "auto" and rbw_ghz > cfg.noise_window_ghz
    if notch_hidden:
        needs_inband |= method == OsnrMethod.INTERPOLATION
    if inband and cfg.inband_methods and needs_inband.any():
        chosen = choose_inband(axis, p, rbw_ghz, present, quality, osnr, slot_mw, carved, confirmed)
        # The fit must not relight a passband holding only ASE (its shape fits that too).
        present = chosen.present & ~ase_only
        quality = np.where(ase_only, np.uint8(Quality.DARK), chosen.quality).astype(np.uint8)
        osnr = np.where(ase_only, np.nan, chosen.osnr_db)
        # Carving seen by the fit stage undoes the trace's interpolated OSNRs as well:
        # the midpoints read the carved floor (10 GBd behind a 15 dB WSS through a
        # 12.5 GHz RBW, every slot lit: the two windows that passed as flat were
        # interpolated 2.2 dB too high).
        undone = chosen.carving_seen | (notch_hidden & ~chosen.uncarved_seen)
        undo = undone[:, None] & (method == OsnrMethod.INTERPOLATION)
        osnr = np.where(undo, np.nan, osnr)
        quality = np.where(undo, np.uint8(Quality.NOISE_UNRESOLVED), quality).astype(np.uint8)
        method = np.where(undo, np.uint8(OsnrMethod.NONE), method).astype(np.uint8)
        unc = np.where(undo, np.nan, unc)
        fitted = (chosen.method == OsnrMethod.FIT) & ~ase_only
        signal_mw = np.where(fitted, chosen.signal_mw, signal_mw)
        noise_psd = np.where(fitted, chosen.noise_psd, noise_psd)
        unc = np.where(fitted, chosen.uncertainty_db, unc)
        method = np.where(fitted, chosen.method, method)
        noise_level = noise_psd * rbw_ghz
        rise, fall, _ = channel_crossings_ghz(g, peak, noise_level, axis)
        offset = _centre_offset_ghz(rise, fall)
    companion = None
    if noise_dbm is not None:
        off = _linear_trace(axis, noise_dbm)
        companion = signal_off(axis, p, off, rbw_ghz, offset, slot_mw)
        companion_method = OsnrMethod.SIGNAL_OFF
    elif reference_dbm is not None:
        ref = analyse_traces(axis, reference_dbm, rbw_ghz, inband=inband)
        companion = reference(
            axis,
            p,
            _linear_trace(axis, reference_dbm),
            np.where(np.isfinite(ref.osnr_db), ref.noise_psd_mw_per_ghz, 0.0),
            slot_mw,
            rbw_ghz,
        )
        companion_method = OsnrMethod.REFERENCE
    if companion is not None:
        # A second trace outranks what one trace can tell, when it is credible.
        use = (
            present
            & np.isfinite(companion.osnr_db)
            & (companion.uncertainty_db <= cfg.fit_max_uncertainty_db)
        )
        osnr = np.where(use, companion.osnr_db, osnr)
        signal_mw = np.where(use, companion.signal_mw, signal_mw)
        noise_psd = np.where(use, companion.noise_psd_mw_per_ghz, noise_psd)
        unc = np.where(use, companion.uncertainty_db, unc)
        method = np.where(use, companion_method, method)
        quality = np.where(use, np.uint8(Quality.OK), quality).astype(np.uint8)
    sig_dbm = np.where(present, mw_to_dbm(signal_mw), np.nan)
    offset = np.where(present, offset, np.nan)

    freq = axis.channel_ghz
    lit_power = np.where(present, slot_dbm, np.nan)
    return TraceAnalysis(
        present=present,
        quality=quality,
        power_dbm=slot_dbm,
        signal_power_dbm=sig_dbm,
        osnr_db=osnr,
        offset_ghz=offset,
        noise_psd_mw_per_ghz=noise_psd,
        total_power_dbm=mw_to_dbm(total_mw),
        lit_channels=present.sum(axis=-1).astype(np.int64),
        tilt_db=tilt_db(freq, lit_power, present, axis.band_ghz),
        flatness_db=_flatness_db(lit_power, present),
        min_osnr_db=_nanmin_rows(osnr),
        osnr_method=method.astype(np.uint8),
        osnr_uncertainty_db=np.asarray(unc, dtype=np.float64),
    )


def _half_max_width_ghz(rise_ghz: FloatArray, fall_ghz: FloatArray) -> FloatArray:
    """Each channel's -3 dB width from its half-maximum crossings
    (:func:`~odpm.pipeline.axis.channel_crossings_ghz`); infinite where there is no
    crossing (counted as wide: its midpoints hold more than noise)."""
    width = fall_ghz - rise_ghz
    return np.asarray(np.where(np.isfinite(width), width, np.inf))


def _centre_offset_ghz(rise_ghz: FloatArray, fall_ghz: FloatArray) -> FloatArray:
    """Midpoint of each channel's half-maximum crossings
    (:func:`~odpm.pipeline.axis.channel_crossings_ghz`) relative to the grid centre (the
    AQ6370's -3 dB centre, on the noise-subtracted level)."""
    return np.asarray((rise_ghz + fall_ghz) / 2, dtype=np.float64)
