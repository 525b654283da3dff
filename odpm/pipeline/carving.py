"""Evidence that a ROADM's WSS filters have carved the ASE, from one trace alone.

Why: behind ROADM filters the ASE is attenuated outside each lit channel's passband.
For a channel that fills its slot, the model fit (:mod:`odpm.pipeline.fit`) then reads
a pedestal that bends down into the notches beside it, and the trace stays almost
perfectly explained by "a slightly wider signal over a lower floor": its OSNR comes
out several dB too high with a residual and a shape sensitivity as small as on an
uncarved line (measured on the first-principles generator: +2 to +4.7 dB at a
claimed 0.25-0.4 dB).  No test on the fit's own window separates the two.

What does separate them is a slot the WSS blocks: a *dark* slot.  A ROADM passes
only the spectrum assigned to channels and attenuates the rest (to stop ASE building
up along the line), so the floor seen at a dark slot's centre is the carved floor,
well below the ASE under its lit neighbours.  On an uncarved line the two agree: the
ASE varies by a fraction of a dB over 50 GHz (tilt, gain ripple).  So a dark slot
whose floor lies more than :data:`CARVED_FLOOR_RATIO` below a lit neighbour's
credibly fitted pedestal is evidence of carving, and then no fitted OSNR of that
trace is credible (the same filters carve every channel's noise), nor any
interpolated one: the midpoints read the same carved floor.

The same comparison the other way is evidence that the ASE is *not* carved: a dark
slot level with its neighbours' pedestals (:func:`level_dark_slots`).  A trace with
every slot lit, or whose dark slots have no fitted lit neighbour, carries neither
(measured before that evidence was required: 32 GBd, 6.25 GHz RBW, 15 dB carving, all
80 slots lit: 42 channels reported 3.7-4.5 dB too high); with ``line_filtering =
"auto"`` its fitted OSNRs are then withheld unless another sign of uncarved ASE shows
(:func:`odpm.pipeline.select.level_between_channels`, shoulders agreeing with the
midpoints).  Channels that fill their whole WSS passband (40 GBd behind 44 GHz) are
caught only because the neighbours' trust is loosened to 3 x
``fit_max_uncertainty_db``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from odpm.models import FloatArray
from odpm.pipeline.axis import TraceAxis
from odpm.pipeline.formulas import BoolArray

#: A dark slot's floor below this fraction of a lit neighbour's credibly fitted noise
#: level (-0.5 dB) is carving.  Uncarved, the ratio measured on the generator's cases
#: stays within -0.41..+0.19 dB (the ASE's ripple over one slot plus the pedestal's
#: own error at the fit's credibility limit); a WSS carving only 3 dB already gives
#: -0.8..-1.1 dB, with fitted OSNRs ~2 dB too high, so the threshold sits close in.
CARVED_FLOOR_RATIO = 10 ** (-0.5 / 10)
#: Half width of the region around a dark slot's centre whose mean is its floor:
#: at least this many GHz (and at least half the RBW), to average the trace's scatter.
_FLOOR_HALF_WIDTH_GHZ = 2.0


def dark_floor(axis: TraceAxis, p: npt.NDArray[np.float32], rbw_ghz: float) -> FloatArray:
    """Mean linear trace level ``(N, C)`` within a few GHz of each slot's centre."""
    g = np.take(p, axis.slots.idx, axis=1)[..., 1:-1].astype(np.float64)
    near = np.abs(axis.slot_offset_ghz) <= max(rbw_ghz / 2, _FLOOR_HALF_WIDTH_GHZ)
    count = near.sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(np.where(near[None], g, 0.0).sum(axis=-1) / count)


def nearest_level(level: FloatArray, seen: BoolArray, reach_slots: int = 1) -> FloatArray:
    """Per slot ``(N, C)``: the mean of ``level`` at the nearest ``seen`` slot on each
    side within ``reach_slots`` (the slot itself left out), the one there is where only
    one side has such a slot, NaN where neither has.  With both sides, the level is
    interpolated to the slot rather than taken from one side, so a slope of the ASE
    across the slot does not pass for a difference."""
    n, c = level.shape
    index = np.broadcast_to(np.arange(c), (n, c))
    # Index of the nearest seen slot strictly below / above each slot (-1 / c: none).
    below = np.maximum.accumulate(np.where(seen, index, -1), axis=-1)
    below = np.concatenate((np.full((n, 1), -1), below[:, :-1]), axis=-1)
    above = np.minimum.accumulate(np.where(seen, index, c)[:, ::-1], axis=-1)[:, ::-1]
    above = np.concatenate((above[:, 1:], np.full((n, 1), c)), axis=-1)
    rows = np.arange(n)[:, None]
    use_below = (below >= 0) & (index - below <= reach_slots)
    use_above = (above < c) & (above - index <= reach_slots)
    level_below = np.where(use_below, level[rows, np.maximum(below, 0)], 0.0)
    level_above = np.where(use_above, level[rows, np.minimum(above, c - 1)], 0.0)
    count = use_below.astype(np.float64) + use_above
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(np.where(count > 0, (level_below + level_above) / count, np.nan))


def neighbour_level(lit: BoolArray, noise_level: FloatArray, credible: BoolArray) -> FloatArray:
    """Per slot ``(N, C)``: the noise level its lit, credibly fitted neighbours put at
    its centre (trace units), NaN where neither neighbour is trusted.

    With both neighbours trusted, their mean: the pedestal interpolated to the slot's
    centre, so the ASE's slope and ripple over one spacing do not pass for carving
    (75 GHz grid, gain ripple: a single neighbour's level sat 0.55 dB above the
    uncarved floor between them)."""
    return nearest_level(noise_level, lit & credible & (noise_level > 0))


def carved_by_roadm(
    floor: FloatArray, lit: BoolArray, noise_level: FloatArray, credible: BoolArray
) -> BoolArray:
    """Per trace ``(N,)``: does a dark slot's ``floor`` (``(N, C)``, trace units) lie
    below :data:`CARVED_FLOOR_RATIO` x the noise level its credibly fitted lit
    neighbours put at its centre (:func:`neighbour_level`)?"""
    level = neighbour_level(lit, noise_level, credible)
    with np.errstate(invalid="ignore"):
        below = floor < CARVED_FLOOR_RATIO * level
    return np.asarray((~lit & below).any(axis=-1))


def level_dark_slots(
    floor: FloatArray, lit: BoolArray, noise_level: FloatArray, credible: BoolArray
) -> BoolArray:
    """Per trace ``(N,)``: positive evidence that the ASE is *not* carved: a dark slot
    whose ``floor`` lies within :data:`CARVED_FLOOR_RATIO` (either way) of the level
    its credibly fitted neighbours put at its centre.  A WSS blocks a dark slot, so
    behind ROADM filters its floor sits well below the ASE under its lit
    neighbours; level with them, the ASE reaches the dark slot unfiltered."""
    level = neighbour_level(lit, noise_level, credible)
    with np.errstate(invalid="ignore"):
        level_with = (floor >= CARVED_FLOOR_RATIO * level) & (floor <= level / CARVED_FLOOR_RATIO)
    return np.asarray((~lit & level_with).any(axis=-1))


#: More than this fraction of the noise windows between two narrow lit channels not
#: flat is a trace whose flat windows are not to be trusted either.
CURVED_NARROW_FRACTION = 0.5


def mostly_curved_between_narrow(unresolved_mid: BoolArray, narrow_lit: BoolArray) -> BoolArray:
    """Per trace ``(N,)``: are more than :data:`CURVED_NARROW_FRACTION` of the inner
    noise windows between two narrow lit channels (``narrow_lit`` ``(N, C)``) not flat
    (``unresolved_mid`` ``(N, C + 1)``, interpolation's flatness test)?

    Why: between two narrow channels only their skirts (through a wide RBW) or a WSS
    notch bend the noise window.  When most such windows are bent, the few that pass
    the flatness test do so by chance, inside the same notch: 10 GBd behind a 15 dB
    WSS through a 12.5 GHz RBW, every slot lit, bends 78 of 80 windows and the two that
    passed were interpolated 2.2 dB too high; uncarved, the same plan bends 17 of 80
    (the skirts of the highest-OSNR channels) and every interpolated OSNR is within
    0.25 dB (generator).  Such a trace gets no interpolated OSNR: flagged, not wrong."""
    pairs = narrow_lit[:, :-1] & narrow_lit[:, 1:]
    curved = (unresolved_mid[:, 1:-1] & pairs).sum(axis=-1)
    total = pairs.sum(axis=-1)
    return np.asarray((total > 0) & (curved > CURVED_NARROW_FRACTION * total))
