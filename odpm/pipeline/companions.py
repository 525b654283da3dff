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
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from odpm.models import FloatArray
from odpm.pipeline.axis import TraceAxis
from odpm.pipeline.formulas import osnr_db

_DB_PER_NEPER = 10.0 / math.log(10.0)
#: The signal must be at least this fraction of the on-trace slot power for a
#: signal-off reading: otherwise the channel was not switched off (or is not there).
_MIN_SIGNAL_FRACTION = 0.05
_RIDGE = 1e-9
#: The reference fit is repeated over this inner fraction of the slot; the change
#: of OSNR counts as uncertainty.
_INNER_FRACTION = 0.75


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


def _fit_reference(
    y: FloatArray, shape: FloatArray, u: FloatArray, w: FloatArray, correlation: float
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
    """``y = g shape + n0 + n1 u`` by weighted least squares per (trace, channel):
    ``(g, n0, var g / g^2, var n0 / n0^2, cov / (g n0))``."""
    cols = np.stack((shape, np.ones_like(y), u), axis=-1) * w[..., None]
    b = y * w
    gram = np.einsum("nclp,nclq->ncpq", cols, cols)
    diag = np.einsum("ncpp->ncp", gram)
    diag += np.where(diag > 0, _RIDGE * diag, 1.0)
    inv = np.linalg.inv(gram)
    rhs = np.einsum("nclp,ncl->ncp", cols, b)
    coef = np.einsum("ncpq,ncq->ncp", inv, rhs)
    resid = b - np.einsum("nclp,ncp->ncl", cols, coef)
    dof = np.maximum((w > 0).sum(axis=-1) - 3.0, 1.0)
    var = (resid * resid).sum(axis=-1) / dof * correlation
    g, n0 = coef[..., 0], coef[..., 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        return (
            np.asarray(g),
            np.asarray(n0),
            np.asarray(inv[..., 0, 0] * var / g**2),
            np.asarray(inv[..., 1, 1] * var / n0**2),
            np.asarray(inv[..., 0, 1] * var / (g * n0)),
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

    The live slot is fitted as ``g x ref + n0 + n1 u`` (the reference *with* its
    noise, so nothing depends on estimating that noise well); the live noise density
    is then ``(n0 + g x n_ref) / RBW`` and the signal the slot power minus that noise
    over the slot (the IEC 61280-2-9 formula).  Uncertainty: the fit's covariance,
    and how far the OSNR moves when the fit is restricted to the inner
    :data:`_INNER_FRACTION` of the slot: noise that is not smooth across the slot
    (carved by a ROADM filter) makes the two disagree, and the channel is flagged.
    """
    idx = axis.slots.idx[:, 1:-1]  # the slot's own points (C, L)
    y = np.take(p, idx, axis=1).astype(np.float64)  # (N, C, L)
    shape = np.broadcast_to(np.take(ref, idx, axis=1).astype(np.float64), y.shape)
    # Padded slot points repeat the last one: weight each distinct point once.
    distinct = np.concatenate((np.ones((idx.shape[0], 1), bool), np.diff(idx, axis=1) != 0), axis=1)
    w = np.where(distinct[None], 1.0 / np.maximum(y, 1e-30), 0.0)
    u = np.broadcast_to(axis.slot_offset_ghz / (axis.slot_width_ghz[:, None] / 2), y.shape)
    step_ghz = float(np.median(np.diff(axis.frequency_ghz)))
    correlation = max(1.0, rbw_ghz / step_ghz)
    ref_n = np.where(np.isfinite(ref_noise_psd), ref_noise_psd, 0.0) * rbw_ghz

    def osnr_of(
        weights: FloatArray,
    ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        g, n0, vg, vn, cgn = _fit_reference(y, shape, u, weights, correlation)
        noise_psd = (n0 + g * ref_n) / rbw_ghz
        signal = slot_mw - noise_psd * axis.slot_width_ghz
        ok = (g > 0) & (noise_psd > 0) & (signal > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            unc = _DB_PER_NEPER * np.sqrt(np.maximum(vg + vn - 2 * cgn, 0.0))
        osnr = np.where(ok, osnr_db(signal, noise_psd), np.nan)
        return np.asarray(signal), np.asarray(noise_psd), np.asarray(osnr), np.asarray(unc)

    signal, noise_psd, osnr, unc = osnr_of(w)
    inner = np.abs(axis.slot_offset_ghz) <= _INNER_FRACTION * axis.slot_width_ghz[:, None] / 2
    osnr_inner = osnr_of(np.where(inner[None], w, 0.0))[2]
    unc = np.sqrt(unc**2 + (osnr_inner - osnr) ** 2)
    return CompanionResult(
        signal_mw=signal,
        noise_psd_mw_per_ghz=noise_psd,
        osnr_db=osnr,
        uncertainty_db=np.asarray(np.where(np.isfinite(osnr), unc, np.nan)),
    )
