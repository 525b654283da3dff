"""A trace against a reference ("golden") trace: per-channel deltas and the spectrum difference.

Both spectra go through the same pipeline (the device's plan and settings, fresh
alarm state), so a delta is the change of what the monitor reports, not an
artefact of two analyses.  Per channel:

* ``power_delta_db`` = power now - power in the reference (dB, dark channels
  included: a channel gone dark shows its drop to the floor);
* ``osnr_delta_db`` = OSNR now - OSNR in the reference (where both exist);
* ``offset_drift_ghz`` = centre offset now - centre offset in the reference;
* ``status``: ``both`` (lit in both), ``new`` (lit now, dark in the reference),
  ``missing`` (lit in the reference, dark now) or ``dark`` (in neither).

The spectrum difference is taken on the trace's own axis, the reference
interpolated linearly onto it in dB (NaN outside the reference's span), so it
can be drawn over the trace.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from odpm.config import AlarmConfig, CalibrationConfig, PipelineConfig
from odpm.grid import ChannelPlan
from odpm.models import Reading, TraceScan

__all__ = ["Comparison", "analyse_spectrum", "compare_spectra"]


def analyse_spectrum(
    plan: ChannelPlan,
    config: PipelineConfig,
    frequency_thz: npt.ArrayLike,
    power_dbm: npt.ArrayLike,
    rbw_ghz: float,
    *,
    device: str = "",
    time: datetime | None = None,
    calibration: CalibrationConfig | None = None,
) -> Reading:
    """One spectrum through a fresh pipeline (no alarm state carried over)."""
    from odpm.pipeline import Pipeline

    pipeline = Pipeline(plan, config, AlarmConfig(), calibration or CalibrationConfig())
    return pipeline.process(
        TraceScan(
            device_id=device,
            time=time or datetime.now(UTC),
            frequency_thz=np.asarray(frequency_thz, dtype=np.float64),
            power_dbm=np.asarray(power_dbm, dtype=np.float64),
            rbw_ghz=float(rbw_ghz),
        )
    )


def _r(v: float, nd: int = 3) -> float | None:
    return None if not math.isfinite(v) else round(float(v), nd)


@dataclass(frozen=True)
class Comparison:
    """The result of :func:`compare_spectra` (arrays per channel, NaN where none)."""

    trace: Reading
    reference: Reading
    power_delta_db: npt.NDArray[np.float64]
    osnr_delta_db: npt.NDArray[np.float64]
    offset_drift_ghz: npt.NDArray[np.float64]
    status: list[str]
    frequency_thz: npt.NDArray[np.float64]
    difference_db: npt.NDArray[np.float64]

    def channels(self) -> list[dict[str, Any]]:
        t, r = self.trace, self.reference
        return [
            {
                "channel": int(t.channel[i]),
                "frequency_thz": round(float(t.frequency_thz[i]), 6),
                "status": self.status[i],
                "power_dbm": _r(t.power_dbm[i]),
                "reference_power_dbm": _r(r.power_dbm[i]),
                "power_delta_db": _r(self.power_delta_db[i]),
                "osnr_db": _r(t.osnr_db[i]),
                "reference_osnr_db": _r(r.osnr_db[i]),
                "osnr_delta_db": _r(self.osnr_delta_db[i]),
                "offset_ghz": _r(t.offset_ghz[i]),
                "reference_offset_ghz": _r(r.offset_ghz[i]),
                "offset_drift_ghz": _r(self.offset_drift_ghz[i]),
            }
            for i in range(t.channel.size)
        ]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: channels, new/missing lists, and the spectrum difference for plotting."""
        chans = self.channels()
        return {
            "channels": chans,
            "new_channels": [c["channel"] for c in chans if c["status"] == "new"],
            "missing_channels": [c["channel"] for c in chans if c["status"] == "missing"],
            "spectrum": {
                "frequency_thz": np.round(self.frequency_thz, 6).tolist(),
                "difference_db": [
                    None if d != d else round(d, 2) for d in self.difference_db.tolist()
                ],
            },
        }


def compare_spectra(
    plan: ChannelPlan,
    config: PipelineConfig,
    *,
    trace: tuple[npt.ArrayLike, npt.ArrayLike, float],
    reference: tuple[npt.ArrayLike, npt.ArrayLike, float],
    calibration: CalibrationConfig | None = None,
) -> Comparison:
    """Compare ``trace`` with ``reference``, each ``(frequency_thz, power_dbm, rbw_ghz)``."""
    now = analyse_spectrum(plan, config, *trace, calibration=calibration)
    ref = analyse_spectrum(plan, config, *reference, calibration=calibration)
    status = [
        "both" if a and b else "new" if a else "missing" if b else "dark"
        for a, b in zip(now.present.tolist(), ref.present.tolist(), strict=True)
    ]
    f_now = np.asarray(trace[0], dtype=np.float64)
    p_now = np.asarray(trace[1], dtype=np.float64)
    f_ref = np.asarray(reference[0], dtype=np.float64)
    p_ref = np.asarray(reference[1], dtype=np.float64)
    order = np.argsort(f_ref)
    ref_on_axis = np.interp(f_now, f_ref[order], p_ref[order], left=np.nan, right=np.nan)
    return Comparison(
        trace=now,
        reference=ref,
        power_delta_db=now.power_dbm - ref.power_dbm,
        osnr_delta_db=now.osnr_db - ref.osnr_db,
        offset_drift_ghz=now.offset_ghz - ref.offset_ghz,
        status=status,
        frequency_thz=f_now,
        difference_db=p_now - ref_on_axis,
    )
