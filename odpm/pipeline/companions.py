"""OSNR from a second trace: the "signal_off" method, and the result type it shares
with the "reference" method (:mod:`odpm.pipeline.reference`).

Signal-off (IEC TR 61282-12's integral method; Yokogawa AQ6370 DUAL TRACE; EXFO's
commissioning assistant): with the channels switched off, the trace shows the noise
that lies under them, carved by whatever filters it crossed.  Per channel:

* signal ``S = P_on(slot) - P_off(slot)`` (both integrated over the slot exactly as
  the slot power is);
* noise density at the carrier ``N(f_c)`` = the off trace averaged over the points
  within half an RBW of the measured centre, over the RBW;
* ``OSNR = S / (N(f_c) x 12.5 GHz)``; uncertainty from the spread of those points.

It returns per-channel arrays ``(N, C)``; NaN where the method gives no number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from odpm.models import FloatArray
from odpm.pipeline.axis import TraceAxis
from odpm.pipeline.formulas import osnr_db

DB_PER_NEPER = 10.0 / math.log(10.0)
#: The signal must be at least this fraction of the on-trace slot power for a
#: signal-off reading: otherwise the channel was not switched off (or is not there).
_MIN_SIGNAL_FRACTION = 0.05


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
    unc = DB_PER_NEPER * spread / np.sqrt(np.maximum(count, 1))
    osnr = np.where(ok, osnr_db(signal, noise_psd), np.nan)
    return CompanionResult(
        signal_mw=np.asarray(signal),
        noise_psd_mw_per_ghz=np.asarray(noise_psd),
        osnr_db=np.asarray(osnr),
        uncertainty_db=np.asarray(np.where(ok, unc, np.nan)),
    )
