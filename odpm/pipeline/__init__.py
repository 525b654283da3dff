"""The analysis pipeline: raw port powers and traces in, per-channel readings out.

Two paths share one :class:`Pipeline` per device:

* **Port scans** (``MEAS:POW?`` or stream frames): one photodiode per grid slot, no
  spectrum.  A channel's power is its port's calibrated power; total power is the
  linear sum of all ports.  Signal power, OSNR and offset cannot be measured and
  stay NaN (quality ``POWER_ONLY``), never invented.
* **Traces** (scanned spectra): OSNR by the interpolation method of
  IEC 61280-2-9, as bench OSAs implement it (Yokogawa AQ6370 "AUTO-CTR", EXFO
  "IEC"), on the ITU-T G.694.1 channel plan.

Trace conventions.  Point ``k`` is the power ``p_k`` (mW) through a filter of
noise-equivalent bandwidth ``RBW`` centred on ``f_k``; for a spectrum whose power
spectral density (PSD) ``S`` is linear over the filter, ``p_k = S(f_k) x RBW``.
All work is in linear units on the actual, possibly non-uniform spacing of the
points.  The trace is taken as piecewise linear between points and integrated
exactly over any frequency range (:func:`range_integration_weights`), so slot
edges and noise windows need not fall on sample points.

Everything that depends only on the frequency axis (integration weights, slot
index ranges, interpolation factors, calibration on the axis) is computed once per
axis in :class:`TraceAxis` and cached: a monitor scans the same axis thousands of
times.  Its indices point into the trace as given, so a trace in descending
frequency (ascending wavelength) or any order is used as is, never reordered.  The
batch function :func:`analyse_traces` analyses ``N`` traces sharing an axis as
``(N, K)`` arrays; :meth:`Pipeline.process` calls it with ``N = 1``.  A batch gives
exactly the numbers its traces give one by one (see :func:`_weighted_sums`).

Modules: :mod:`.formulas` (the formulas), :mod:`.axis` (per-axis geometry),
:mod:`.interpolation` (IEC 61280-2-9 over a batch), :mod:`.ports` (port-reading
caches), :mod:`.core` (the per-device :class:`Pipeline`).
"""

from __future__ import annotations

from odpm.pipeline.axis import TraceAxis, range_integration_weights
from odpm.pipeline.core import Pipeline
from odpm.pipeline.formulas import (
    OSNR_REFERENCE_BANDWIDTH_GHZ,
    UNRESOLVED_CURVATURE_DB,
    osnr_db,
    signal_power_mw,
    tilt_db,
)
from odpm.pipeline.interpolation import TraceAnalysis, analyse_traces
from odpm.units import dbm_to_mw, mw_to_dbm

__all__ = [
    "OSNR_REFERENCE_BANDWIDTH_GHZ",
    "UNRESOLVED_CURVATURE_DB",
    "Pipeline",
    "TraceAnalysis",
    "TraceAxis",
    "analyse_traces",
    "dbm_to_mw",
    "mw_to_dbm",
    "osnr_db",
    "range_integration_weights",
    "signal_power_mw",
    "tilt_db",
]
