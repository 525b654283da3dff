"""Presence tests beyond "the peak stands clear of the interpolated noise": what a
slot's shape says when the midpoints do not hold the noise.

Three ways the midpoints mislead, each with its own test:

* a spectrum wider than its slot fills the midpoints with its neighbours' signal, so a
  lit channel's peak stands only a few dB above them: the slot is still present when
  its centre stands above its edges (:func:`stands_above_edges`);
* a line packed near the Nyquist limit is flat across its slots: a lit slot stands
  above neither; it is present when it stands above the dark slots near it, which
  sit near the ASE (:func:`stands_above_dips`);
* behind a ROADM, the WSS carves the ASE between passbands, so a provisioned channel
  whose transmitter has failed still shows its passband's ASE standing well above the
  carved midpoints: that slot is *not* present when its peak does not clear the noise
  beside its neighbours' signals, in their own passbands (:func:`ase_only_passbands`).

All are pure functions of per-channel arrays ``(N, C)``; measured figures are in
docs/osnr_methods.md.
"""

from __future__ import annotations

import numpy as np

from odpm.models import FloatArray
from odpm.pipeline.carving import nearest_level
from odpm.pipeline.formulas import (
    CARVED_MIDPOINT_DB,
    CENTRE_RISE_DB,
    DIP_DB,
    DIP_NEIGHBOUR_DB,
    RISE_NEIGHBOUR_DB,
    BoolArray,
)

#: How far (in slots) a slot looks for a channel whose shoulders show the in-band
#: noise (:func:`~odpm.pipeline.carving.nearest_level`): the ASE changes little over a
#: few slots (its tilt and ripple are smooth), and the nearest rather than the adjacent
#: channels count, so that the middle one of three failed transmitters side by side is
#: judged too.  A slot's own shoulders never count (a failed passband has none: its ASE
#: fills it).
INBAND_REACH_SLOTS = 3
#: How far (in slots) a slot looks for dips (see stands_above_dips).  A dark slot far
#: from the dip it is compared with may stand above it by the ASE's slope alone; on the
#: generator, a sparse line (4 lit, 12 dark) on ASE tilted 12 dB over the band with
#: 2 dB ripple lit 5 of 720 dark slots when every dip counted, none within 12 or 16
#: slots; near-Nyquist lines (45-48 GBd on 50 GHz, 40 traces) left 6 of 2,640 lit
#: channels dark within 8 slots, none within 12.
DIP_REACH_SLOTS = 12


def highest_neighbour(level: FloatArray) -> FloatArray:
    """The higher of each slot's two neighbours' values of ``level`` ``(N, C)`` (one
    neighbour at the plan's ends)."""
    out = np.zeros_like(level)
    out[..., 1:] = level[..., :-1]
    out[..., :-1] = np.maximum(out[..., :-1], level[..., 1:])
    return out


def stands_above_edges(
    centre_level: FloatArray, edge_level: FloatArray, peak: FloatArray
) -> BoolArray:
    """A slot whose central half stands :data:`CENTRE_RISE_DB` above the level at its
    edges, while its peak is within :data:`RISE_NEIGHBOUR_DB` of its neighbours': the
    signal of a spectrum wider than its slot.

    The second condition is what keeps a failed transmitter's passband out: behind a
    ROADM, the passband's ASE stands above the carved midpoints just as an overfilled
    channel stands above its filled ones, but it lies far below its lit neighbours
    (by their signal over the ASE: 12 dB for 32 GBd at 16 dB OSNR).  An overfilled lit
    channel cannot lie far below them and still rise above its edges, which their
    skirts fill (measured on the generator's 270-case sweep: at most 3.4 dB below)."""
    rise = centre_level >= edge_level * 10 ** (CENTRE_RISE_DB / 10)
    return np.asarray(rise & (peak * 10 ** (RISE_NEIGHBOUR_DB / 10) >= highest_neighbour(peak)))


def ase_only_passbands(
    peak: FloatArray,
    edge_level: FloatArray,
    inband_level: FloatArray,
    relative_db: float,
) -> BoolArray:
    """Slots that hold only their passband's ASE ``(N, C)``: the midpoints read
    :data:`CARVED_MIDPOINT_DB` below the noise beside the neighbouring channels (a
    WSS carved them), and the slot's peak does not clear that in-band noise by
    ``relative_db`` (the configured ``detection_relative_db``), the margin the peak
    must clear above the noise everywhere else.  Where no neighbour's shoulders were
    seen (``inband_level`` NaN) nothing is said."""
    with np.errstate(invalid="ignore"):
        carved = edge_level * 10 ** (CARVED_MIDPOINT_DB / 10) <= inband_level
        unclear = peak < inband_level * 10 ** (relative_db / 10)
    return np.asarray(carved & unclear)


def stands_above_dips(
    centre_level: FloatArray,
    edge_level: FloatArray,
    present: BoolArray,
    relative_db: float,
) -> BoolArray:
    """Slots of a line packed near the Nyquist limit that hold a signal ``(N, C)``.

    Where neighbouring raised cosines add up to a flat spectrum (48 GBd at roll-off
    0.1 on 50 GHz), a lit slot's centre stands neither above its edges nor above the
    midpoints, which hold its neighbours' signal: both tests above call it dark.  A
    dark slot in such a line is a *dip*: its centre sits :data:`DIP_DB` or more below
    its edges (its lit neighbours' skirts), near the ASE.  A slot not yet present is
    present when its centre stands ``relative_db`` (the configured
    ``detection_relative_db``) above the nearest dips' centres (within
    :data:`DIP_REACH_SLOTS` on each side) and within :data:`DIP_NEIGHBOUR_DB` of its
    neighbours' centres.  Without a dip nearby nothing is said: a line of such
    channels with no dark slot shows nowhere where its ASE lies.

    Behind a WSS the dips are blocked slots, carved far below the ASE, so a failed
    transmitter's open passband (ASE only) stands above them too; it lies below its
    lit neighbours by their signal over the ASE, which the neighbour test sees down to
    a neighbour's signal level with the ASE (OSNR ~6 dB at 48 GBd)."""
    dip = ~present & (centre_level * 10 ** (DIP_DB / 10) <= edge_level)
    floor = nearest_level(centre_level, dip, DIP_REACH_SLOTS)
    with np.errstate(invalid="ignore"):
        above = centre_level >= floor * 10 ** (relative_db / 10)
    # Centres, not peaks: a failed passband's peak is at its edge, in a neighbour's skirt.
    near = centre_level * 10 ** (DIP_NEIGHBOUR_DB / 10) >= highest_neighbour(centre_level)
    return np.asarray(~present & ~dip & above & near)
