"""OSNR from the noise beside each channel inside its own slot (the "shoulder" method).

Source: the noise areas of the Yokogawa AQ6370's WDM analysis (``AUTO-FIX`` /
``MANUAL-FIX`` / ``MANUAL-CENTER``: the noise is read at a chosen distance from the
channel centre instead of at the inter-channel midpoints, then fitted linearly across
the channel), and IEC 61280-2-9's formula for the OSNR once the noise under the
signal is known.  See also IEC TR 61282-12 on in-band noise.

Why: behind ROADMs the WSS filters carve the ASE between channels, so the midpoints
of IEC 61280-2-9 read the carved floor and the interpolated OSNR comes out too high
(by several dB under deep carving; by 1.5-2 dB under a 3 dB carving, which the
midpoint windows still show as flat).  Inside a lit channel's WSS passband the ASE is
not carved: a narrow channel (10 GBd on 50 GHz) leaves that noise visible beside it.

Per channel (all channels and traces at once, :func:`shoulder_noise`):

1. the occupied band: the outermost crossings of half the way from the slot's floor
   to its peak (the -3 dB width, ~ the symbol rate) widened by ``1 + roll-off`` for
   the largest roll-off in use (0.35), plus one RBW for the instrument's filter;
2. candidate noise areas: windows of three thirds (each ``_THIRD_GHZ`` wide) outside
   that mask and at least the RBW's reach inside the slot's edge (where a WSS filter
   may cut: a 12.5 GHz RBW smears a carved notch into a broad, flat-bottomed dip that
   would otherwise pass for a floor), one side each;
3. on each side the *flattest* window is taken (the largest deviation, in dB, of an
   outer third's mean from the middle third's): a signal skirt or a WSS edge roll-off
   makes a window sloped, and a sloped window's mean is biased; so the flattest one
   is the WSS passband's flat part, between the channel's skirt and the filter edge;
4. the two sides' levels, linear across the channel, evaluated at the grid centre:
   the noise PSD ``N`` under the signal;
5. signal = the trace minus that noise, integrated over the band between the two
   noise areas (not the whole slot: outside the WSS passband the noise is carved and
   ``N x slot width`` would overstate it); ``OSNR = S / (N x 12.5 GHz)`` (IEC 61280-2-9).

Uncertainty (dB, one sigma in spirit): the worst flatness of the two noise areas plus
half the two sides' disagreement (the ASE's tilt and ripple over 30 GHz are well
under 0.1 dB, so a larger difference is contamination of one side).

Rejected (NaN), so that another method or a flag takes over: no window fits between
the mask and the slot edge on a side (wide channels that fill their slot); the
flattest window is still not flat (:data:`MAX_FLATNESS_DB`: skirt or carved edge
reaching in); the sides disagree by more than :data:`MAX_SIDE_DISAGREEMENT_DB`; a
third holds no point; the signal comes out non-positive.

Limits: needs the shoulders resolved, i.e. an occupied band plus the RBW's reach
well inside the WSS passband: 10 GBd on 50 GHz at 2.5 GHz RBW always; at 6.25 GHz RBW
only where the channel's skirt is low enough (lower OSNR) before the WSS edge starts;
not wide channels (28 GBd and up on 50 GHz) at any RBW.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from odpm.models import FloatArray
from odpm.pipeline.axis import TraceAxis, half_crossings_ghz
from odpm.pipeline.formulas import osnr_db

#: Width of one third of a noise area (GHz).  Three thirds (4.5 GHz) fit beside a
#: 10 GBd channel inside a 44 GHz WSS passband, and each third still averages a few
#: points of a 0.004-0.01 nm scan.
_THIRD_GHZ = 1.3
#: The largest roll-off the occupied band allows for (older 10G-like shapes: 0.35).
_MAX_ROLLOFF = 0.35
#: The RBW filter's reach beyond the occupied band, in RBWs.
_REACH_RBW = 0.75
#: A noise area whose outer thirds differ from its middle third by more than this is
#: not a floor (a skirt or an edge runs through it).  A skirt biasing the mean by
#: 1 % already slopes a 4.5 GHz window by ~0.15 dB at 6.25 GHz RBW.
MAX_FLATNESS_DB = 0.25
#: The two sides' noise levels may differ by this much (ASE tilt and ripple over one
#: slot are below 0.1 dB; more is a contaminated side).
MAX_SIDE_DISAGREEMENT_DB = 0.4
#: Added to the uncertainty when only one side is flat: the noise is then taken as
#: flat across the channel (ASE tilt and ripple: under 0.1 dB over half a slot).
ONE_SIDE_PENALTY_DB = 0.1
#: Smallest uncertainty claimed (dB): the method's own floor on clean traces.
_MIN_UNCERTAINTY_DB = 0.02


@dataclass(frozen=True, slots=True)
class ShoulderResult:
    """Per channel ``(N, C)``: noise PSD at the centre (mW/GHz), signal (mW), OSNR and
    its uncertainty (dB), all NaN where the shoulders are not usable."""

    noise_psd_mw_per_ghz: FloatArray
    signal_mw: FloatArray
    osnr_db: FloatArray
    uncertainty_db: FloatArray


@dataclass(frozen=True, slots=True)
class _Areas:
    """Per axis: candidate noise areas centred on each slot point.  Third ``k`` of the
    area centred on point ``j`` of channel ``c`` spans the slot points
    ``bounds[k, c, j] : bounds[k + 1, c, j]`` (so its mean is a difference of cumulative
    sums); with each area's centre ``(C, L)``, whether all three thirds hold a point,
    and the trapezoid width of each slot point ``(C, L)``."""

    bounds: npt.NDArray[np.intp]
    centre_ghz: FloatArray
    filled: npt.NDArray[np.bool_]
    width_ghz: FloatArray


def _areas(axis: TraceAxis) -> _Areas:
    """Built once per axis (kept with it, like its neighbourhoods)."""
    cache: dict[str, _Areas] = axis.__dict__.setdefault("_shoulder_areas", {})
    if "areas" in cache:
        return cache["areas"]
    x = axis.slot_offset_ghz  # (C, L); padding repeats the last point
    valid = np.concatenate((np.ones_like(x[:, :1], dtype=bool), np.diff(x, axis=-1) > 0), axis=-1)
    count = valid.sum(axis=-1)
    h = _THIRD_GHZ
    bounds = np.empty((4, *x.shape), dtype=np.intp)
    for c in range(x.shape[0]):  # once per axis, not per scan
        xc = x[c, : count[c]]
        for k in range(4):
            bounds[k, c] = np.searchsorted(xc, x[c] + (k - 1.5) * h, side="left")
    filled = (np.diff(bounds, axis=0) > 0).all(axis=0) & valid
    # Trapezoid widths of the valid points (for the signal integral).
    xv = np.where(valid, x, np.nan)
    left = np.concatenate((np.full_like(x[:, :1], np.nan), np.diff(xv, axis=-1)), axis=-1)
    right = np.concatenate((np.diff(xv, axis=-1), np.full_like(x[:, :1], np.nan)), axis=-1)
    width = np.nan_to_num(left / 2) + np.nan_to_num(right / 2)
    width = np.where(valid, width, 0.0)
    areas = _Areas(bounds=bounds, centre_ghz=x, filled=filled, width_ghz=width)
    cache["areas"] = areas
    return areas


def shoulder_noise(
    axis: TraceAxis,
    p: npt.NDArray[np.float32],
    rbw_ghz: float,
    channels: npt.NDArray[np.intp] | None = None,
) -> ShoulderResult:
    """The shoulder method on ``N`` linear traces ``p`` (see the module docstring), on
    every channel or only on ``channels`` (indices; the others come back NaN)."""
    a = _areas(axis)
    every = np.arange(axis.n_channels)
    pick = every if channels is None else np.asarray(channels, dtype=np.intp)
    result = _shoulders(axis, a, p, rbw_ghz, pick)
    if channels is None:
        return result
    shape = (p.shape[0], axis.n_channels)

    def full(v: FloatArray) -> FloatArray:
        out = np.full(shape, np.nan)
        out[:, pick] = v
        return out

    return ShoulderResult(
        noise_psd_mw_per_ghz=full(result.noise_psd_mw_per_ghz),
        signal_mw=full(result.signal_mw),
        osnr_db=full(result.osnr_db),
        uncertainty_db=full(result.uncertainty_db),
    )


def _shoulders(
    axis: TraceAxis,
    a: _Areas,
    p: npt.NDArray[np.float32],
    rbw_ghz: float,
    pick: npt.NDArray[np.intp],
) -> ShoulderResult:
    c = pick.size
    g = np.take(p, axis.slots.idx[pick], axis=1)[..., 1:-1].astype(np.float64)  # (N, c, L)
    x = a.centre_ghz[pick]
    half_slot = (
        np.broadcast_to(np.asarray(axis.slot_width_ghz, dtype=np.float64), (axis.n_channels,))[pick]
        / 2
    )
    bounds, filled, width_ghz = a.bounds[:, pick], a.filled[pick], a.width_ghz[pick]

    # 1. The occupied band, from the -3 dB crossings between the floor and the peak.
    peak, floor = g.max(axis=-1), g.min(axis=-1)
    rise, fall = half_crossings_ghz(g.astype(np.float32), (peak + floor) / 2, x)
    centre = (rise + fall) / 2
    mask = (fall - rise) / 2 * (1 + _MAX_ROLLOFF) + _REACH_RBW * rbw_ghz  # (N, C)

    # 2. Candidate areas: thirds' means and flatness, for every centre point.
    cs = np.concatenate((np.zeros_like(g[..., :1]), np.cumsum(g, axis=-1)), axis=-1)
    chan = np.arange(c)[:, None]
    edges = [cs[:, chan, bounds[k]] for k in range(4)]  # (N, C, J) each
    sizes = np.maximum(np.diff(bounds, axis=0), 1)
    means = np.stack([(edges[k + 1] - edges[k]) / sizes[k] for k in range(3)])  # (3, N, C, J)
    with np.errstate(divide="ignore", invalid="ignore"):
        dev = np.maximum(
            np.abs(10 * np.log10(means[0] / means[1])), np.abs(10 * np.log10(means[2] / means[1]))
        )
    level = means.mean(axis=0)
    reach = 1.5 * _THIRD_GHZ
    # The slot's edge is where a ROADM's filter may cut (a WSS passband never exceeds
    # the slot): keep the RBW's reach away from it, as from the signal.
    edge = half_slot[:, None] - _REACH_RBW * rbw_ghz
    inside_slot = (np.abs(x) + reach <= edge) & filled  # (C, J)
    beyond = np.abs(x[None] - centre[..., None]) - reach >= mask[..., None]  # (N, C, J)
    usable = inside_slot[None] & beyond & np.isfinite(dev)

    # 3. The flattest usable area on each side.
    def side(sign: float) -> tuple[FloatArray, FloatArray, FloatArray]:
        ok = usable & (np.sign(x[None] - centre[..., None]) == sign)
        d = np.where(ok, dev, np.inf)
        j = d.argmin(axis=-1)[..., None]
        best = np.take_along_axis(d, j, axis=-1)[..., 0]
        lvl = np.take_along_axis(level, j, axis=-1)[..., 0]
        pos = np.broadcast_to(x[None], d.shape)
        at = np.take_along_axis(pos, j, axis=-1)[..., 0]
        return best, lvl, at

    dev_lo, n_lo, x_lo = side(-1.0)
    dev_hi, n_hi, x_hi = side(1.0)

    # 4. Linear across the channel, at its centre; one flat side alone when the
    # other is not (a channel off its grid centre leaves little room on one side).
    ok_lo, ok_hi = dev_lo <= MAX_FLATNESS_DB, dev_hi <= MAX_FLATNESS_DB
    both = ok_lo & ok_hi
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = np.where(both, (n_hi - n_lo) / (x_hi - x_lo), 0.0)
        centre_level = np.where(both, n_lo + (centre - x_lo) * slope, np.where(ok_lo, n_lo, n_hi))
        disagree_db = np.where(both, np.abs(10 * np.log10(n_hi / n_lo)), 0.0)
    flatness = np.where(
        both, np.maximum(dev_lo, dev_hi), np.where(ok_lo, dev_lo, dev_hi) + ONE_SIDE_PENALTY_DB
    )
    x_lo = np.where(ok_lo, x_lo, centre - np.maximum(x_hi - centre, 0))
    x_hi = np.where(ok_hi, x_hi, centre + np.maximum(centre - x_lo, 0))

    # 5. Signal between the areas, noise (linear in x) removed.
    inner_lo, inner_hi = x_lo + reach, x_hi - reach
    between = (x[None] >= inner_lo[..., None]) & (x[None] <= inner_hi[..., None])
    noise_at = centre_level[..., None] + slope[..., None] * (x[None] - centre[..., None])
    excess = np.where(between, (g - noise_at) * width_ghz[None], 0.0)
    signal_mw = excess.sum(axis=-1) / rbw_ghz
    noise_psd = centre_level / rbw_ghz

    unc = np.maximum(flatness + disagree_db / 2, _MIN_UNCERTAINTY_DB)
    good = (
        (ok_lo | ok_hi)
        & (disagree_db <= MAX_SIDE_DISAGREEMENT_DB)
        & (noise_psd > 0)
        & (signal_mw > 0)
    )
    nan = np.nan
    return ShoulderResult(
        noise_psd_mw_per_ghz=np.where(good, noise_psd, nan),
        signal_mw=np.where(good, signal_mw, nan),
        osnr_db=np.where(good, osnr_db(signal_mw, noise_psd), nan),
        uncertainty_db=np.where(good, unc, nan),
    )
