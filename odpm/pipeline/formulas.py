"""The per-channel and per-scan formulas of OSNR analysis (IEC 61280-2-9), and the
small types and constants the pipeline modules share."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from odpm.models import FloatArray

#: OSNR is referred to 0.1 nm; at 1550 nm that is 12.48 GHz and, by the convention of
#: IEC 61280-2-9 and every OSA, 12.5 GHz.
OSNR_REFERENCE_BANDWIDTH_GHZ = 12.5

#: A noise window is "not a floor" when the mean PSD of its outer thirds differs from
#: its middle third by more than this.  ASE is smooth over a few GHz (tilt and gain
#: ripple change it by far less than 0.01 dB across a 6.25 GHz window), while a signal
#: skirt reaching the midpoint makes the window strongly sloped or V-shaped.  0.3 dB is
#: several times the scatter of a third-window mean of a well-averaged trace.
UNRESOLVED_CURVATURE_DB = 0.3


def window_curvature_db(thirds: FloatArray) -> FloatArray:
    """How far a noise window is from flat: the larger of its outer thirds' mean levels
    against its middle third's, in dB (``(..., 3)`` in any one unit -> ``(...)``; NaN
    or inf where a third holds no power).  Compared with
    :data:`UNRESOLVED_CURVATURE_DB`."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(np.abs(10 * np.log10(thirds[..., [0, 2]] / thirds[..., 1:2])).max(-1))


#: A slot whose central half stands this far above the level at its edges (the noise
#: interpolated from its two midpoints) holds a signal, whatever the midpoints hold.
#: The configured ``detection_relative_db`` asks the peak to stand clear of the
#: *noise*; where a channel's spectrum is wider than its slot (``(1 + roll-off) x
#: rate > width``, e.g. 63 GBd at roll-off 0.35 on 75 GHz) its neighbours' signal
#: fills the midpoints, and a line of such channels stands only 1.9-6 dB above them:
#: the noise-based test called up to 22 of 26 lit channels dark (a false loss of
#: signal).  Measured (the central half's mean against the interpolated midpoints):
#: on the generator's 270-case sweep, dark slots at most 0.13 dB, lit ones at least
#: 1.88 dB (63 GBd, roll-off 0.35, 12.5 GHz RBW, every slot lit); on the simulator
#: (6 seeds, RBW 2.5-12.5 GHz, WSS off or carving 3-20 dB, a fifth of the slots dark),
#: dark slots at most 0.16 dB, lit ones at least 8.8 dB.  A dark slot between lit
#: ones sits *below* its edges (their skirts), never above.
CENTRE_RISE_DB = 1.0

_MIN_POINTS = 2

IntArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]


# ------------------------------------------------------------------ the formulas


def signal_power_mw(
    slot_power_mw: npt.ArrayLike,
    noise_psd_mw_per_ghz: npt.ArrayLike,
    slot_width_ghz: npt.ArrayLike,
) -> FloatArray:
    """Signal power in a slot: the integrated slot power minus the noise under it.

    IEC 61280-2-9 (interpolation method): the noise under the signal is the noise
    PSD interpolated to the channel centre times the integration width.  Exact when
    the ASE PSD is linear across the slot (the midpoint interpolation assumes it).
    """
    return np.asarray(
        np.asarray(slot_power_mw) - np.asarray(noise_psd_mw_per_ghz) * np.asarray(slot_width_ghz),
        dtype=np.float64,
    )


def osnr_db(
    signal_mw: npt.ArrayLike,
    noise_psd_mw_per_ghz: npt.ArrayLike,
    reference_bandwidth_ghz: float = OSNR_REFERENCE_BANDWIDTH_GHZ,
) -> FloatArray:
    """OSNR = 10 log10(P_signal / (N x B_ref)), IEC 61280-2-9, B_ref = 0.1 nm (12.5 GHz).

    NaN where the signal or the noise is not positive (no meaningful ratio).
    """
    s = np.asarray(signal_mw, dtype=np.float64)
    n = np.asarray(noise_psd_mw_per_ghz, dtype=np.float64) * reference_bandwidth_ghz
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where((s > 0) & (n > 0), s / n, np.nan)
        return np.asarray(10.0 * np.log10(ratio), dtype=np.float64)


def tilt_db(
    frequency_ghz: FloatArray, power_dbm: FloatArray, lit: BoolArray, band_ghz: float
) -> FloatArray:
    """Spectral tilt: least-squares slope of lit channel power vs frequency, in dB
    across the band.

    "Across the band" means slope [dB/GHz] x ``band_ghz``, where ``band_ghz`` is the
    distance from the plan's first to its last channel centre (3950 GHz for the
    80 x 50 GHz C-band plan); positive when the high-frequency (short-wavelength)
    end is stronger.  Vectorised over scans: ``power_dbm`` and ``lit`` are ``(N, C)``;
    NaN for a scan with fewer than two lit channels.
    """
    w = lit.astype(np.float64)
    y = np.where(lit, power_dbm, 0.0)
    n = w.sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_mean = (w * frequency_ghz).sum(axis=-1) / n
        y_mean = (w * y).sum(axis=-1) / n
        dx = (frequency_ghz - x_mean[..., None]) * w
        sxx = (dx * dx).sum(axis=-1)
        sxy = (dx * (y - y_mean[..., None])).sum(axis=-1)
        slope = sxy / sxx
    return np.asarray(np.where(n >= 2, slope * band_ghz, np.nan), dtype=np.float64)


def _flatness_db(power_dbm: FloatArray, lit: BoolArray) -> FloatArray:
    """Max minus min of lit channel powers per scan; NaN when nothing is lit."""
    hi = np.where(lit, power_dbm, -np.inf).max(axis=-1)
    lo = np.where(lit, power_dbm, np.inf).min(axis=-1)
    with np.errstate(invalid="ignore"):
        return np.asarray(np.where(lit.any(axis=-1), hi - lo, np.nan), dtype=np.float64)


def _nanmin_rows(values: FloatArray) -> FloatArray:
    """Row minimum ignoring NaN, NaN for an all-NaN row (without numpy's warning)."""
    m = np.where(np.isnan(values), np.inf, values).min(axis=-1)
    return np.asarray(np.where(np.isinf(m), np.nan, m), dtype=np.float64)


#: Frequencies inside the axis are handled as GHz from this anchor (G.694.1's 193.1 THz),
#: so that sub-MHz differences are not lost against 193,000 GHz.
_ANCHOR = 193.1

#: A slot present by :data:`CENTRE_RISE_DB` alone must have its peak within this much
#: of its higher neighbour's.  Behind a ROADM a failed transmitter's passband (ASE
#: only) stands above the WSS-carved midpoints as an overfilled channel stands above
#: its filled ones, but lies below its lit neighbours by their signal over the ASE
#: (simulator, 32 GBd at 16 dB OSNR: 12 dB); an overfilled lit channel rises above its
#: edges only while its neighbours' skirts there do not outshine it (generator sweep:
#: such channels at most 3.4 dB below their neighbours).
RISE_NEIGHBOUR_DB = 6.0

#: Midpoints this far below the noise beside the neighbouring channels (their
#: shoulders, inside their WSS passbands) are carved: presence is then judged against
#: that in-band noise rather than against them (a failed transmitter's passband of ASE
#: stood 3-20 dB above the carved midpoints and read present: no loss-of-signal).
CARVED_MIDPOINT_DB = 1.0

#: A slot not present whose centre sits this far below its edges is a dip: a dark slot
#: between lit ones, its edges their skirts, its centre near the ASE (generator, 48 GBd
#: at roll-off 0.1 on 50 GHz: dark slots 7.3-10.3 dB below their edges, lit ones
#: between 0.8 dB below and 3.9 dB above).  See presence.stands_above_dips.
DIP_DB = 3.0

#: A slot present by standing above the dips (presence.stands_above_dips) must have its
#: centre within this much of its higher neighbour's.  A failed transmitter's passband
#: behind a WSS stands above the carved dips as well, and lies below its lit
#: neighbours by their signal over the ASE: at OSNR 8-20 dB, 45-48 GBd (generator,
#: carving 3-20 dB), peaks within 6 dB lit 38 more of 288 such slots than before the
#: dips (a failed passband's peak is at its edge, in a neighbour's skirt), centres
#: within 3 dB none more; lit channels of a flat line lie within 1-2 dB of their
#: neighbours.
DIP_NEIGHBOUR_DB = 3.0
