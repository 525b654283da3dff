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
trace is credible (the same filters carve every channel's noise).  The interpolated
OSNR is unaffected: it has its own flatness test on the noise windows.

Limits: a trace with every slot lit, or whose dark slots have no fitted lit
neighbour, carries no such evidence (measured: 32 GBd, 6.25 GHz RBW, 15 dB carving,
all 80 slots lit: 42 channels still reported 3.7-4.5 dB too high), so such a line
needs a signal-off or reference trace.  Channels that fill their whole WSS passband
(40 GBd behind 44 GHz) are caught only because the neighbours' trust is loosened to
3 x ``fit_max_uncertainty_db``.  Interpolated OSNRs are outside this test
(interpolation does not flag a shallow, 3 dB, carving at 6.25 GHz RBW: ~1.5-2 dB
errors, a known defect, strict xfail).
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


def carved_by_roadm(
    floor: FloatArray, lit: BoolArray, noise_level: FloatArray, credible: BoolArray
) -> BoolArray:
    """Per trace ``(N,)``: does a dark slot's ``floor`` (``(N, C)``, trace units) lie
    below :data:`CARVED_FLOOR_RATIO` x the fitted ``noise_level`` (same units) of a
    lit neighbour whose fit is ``credible``?"""
    dark = ~lit
    trusted = lit & credible & (noise_level > 0)
    level = np.where(trusted, noise_level, np.nan)
    pad = np.full_like(level[:, :1], np.nan)
    from_lo = np.concatenate((pad, level[:, :-1]), axis=1)  # the lower neighbour's level
    from_hi = np.concatenate((level[:, 1:], pad), axis=1)
    with np.errstate(invalid="ignore"):
        below = (floor < CARVED_FLOOR_RATIO * from_lo) | (floor < CARVED_FLOOR_RATIO * from_hi)
    return np.asarray((dark & below).any(axis=-1))
