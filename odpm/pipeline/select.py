"""Which OSNR a channel gets, and whether it is present at all, across methods.

Order of trust, per channel: interpolation (IEC 61280-2-9) where its noise windows
are flat (it is exact there and needs no model); else the raised-cosine model fit
(:mod:`odpm.pipeline.fit`) when its uncertainty is at most
``fit_max_uncertainty_db``; else no number and ``noise_unresolved``.  A confidently
wrong number is the outcome to avoid, so a fit that cannot tell signal from noise
(its uncertainty grows with the shape sensitivity) gives none.

Presence: a channel is present when its slot power passes the absolute threshold and
its signal stands ``detection_relative_db`` above the noise by *either* estimate: the
interpolated noise (today's test) or the fit's own amplitude against the fit's noise.
A wide channel that fills its slot puts its own signal at the midpoints, so the
interpolated "noise" equals its signal and the first test alone would call it dark;
the fit separates the two.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from odpm.models import FloatArray, OsnrMethod, Quality
from odpm.pipeline.axis import TraceAxis
from odpm.pipeline.fit import fit_raised_cosine
from odpm.pipeline.formulas import BoolArray
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


def choose_inband(
    axis: TraceAxis,
    p: npt.NDArray[np.float32],
    rbw_ghz: float,
    present: BoolArray,
    quality: npt.NDArray[np.uint8],
    osnr: FloatArray,
    slot_mw: FloatArray,
) -> Choice:
    """Combine interpolation's verdicts (``present``, ``quality``, ``osnr``) with the fit."""
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
    )
