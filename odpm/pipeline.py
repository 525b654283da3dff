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
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt

from odpm.alarms import AlarmEngine
from odpm.config import AlarmConfig, CalibrationConfig, PipelineConfig
from odpm.grid import ChannelPlan, PortGrid
from odpm.models import AlarmEvent, FloatArray, PortScan, Quality, RawScan, Reading, TraceScan
from odpm.units import LN10_OVER_10, dbm_to_mw, mw_to_dbm

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

#: OSNR is referred to 0.1 nm; at 1550 nm that is 12.48 GHz and, by the convention of
#: IEC 61280-2-9 and every OSA, 12.5 GHz.
OSNR_REFERENCE_BANDWIDTH_GHZ = 12.5

#: A noise window is "not a floor" when the mean PSD of its outer thirds differs from
#: its middle third by more than this.  ASE is smooth over a few GHz (tilt and gain
#: ripple change it by far less than 0.01 dB across a 6.25 GHz window), while a signal
#: skirt reaching the midpoint makes the window strongly sloped or V-shaped.  0.3 dB is
#: several times the scatter of a third-window mean of a well-averaged trace.
UNRESOLVED_CURVATURE_DB = 0.3

_MIN_POINTS = 2

IntArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]


# --------------------------------------------------------------------------- units


# ------------------------------------------------------------------ the formulas


def signal_power_mw(
    slot_power_mw: npt.ArrayLike, noise_psd_mw_per_ghz: npt.ArrayLike, slot_width_ghz: float
) -> FloatArray:
    """Signal power in a slot: the integrated slot power minus the noise under it.

    IEC 61280-2-9 (interpolation method): the noise under the signal is the noise
    PSD interpolated to the channel centre times the integration width.  Exact when
    the ASE PSD is linear across the slot (the midpoint interpolation assumes it).
    """
    return np.asarray(
        np.asarray(slot_power_mw) - np.asarray(noise_psd_mw_per_ghz) * slot_width_ghz,
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


# ----------------------------------------------------------- exact integration


def range_integration_weights(
    frequency_ghz: FloatArray, lo_ghz: FloatArray, hi_ghz: FloatArray
) -> tuple[IntArray, IntArray, FloatArray]:
    """Exact integral of the piecewise-linear trace over ``[lo, hi]`` ranges, as weights.

    For ascending ``f`` with spacings ``D_j = f_{j+1} - f_j`` and full trapezoid
    weights ``W_k = (D_{k-1} + D_k)/2`` (``D_{-1} = D_{K-1} = 0``), let ``a`` lie in
    ``[f_i, f_{i+1}]`` at fraction ``t_a`` and ``b`` in ``[f_m, f_{m+1}]`` at ``t_b``.
    Then ``int_a^b p df = sum_{k=i}^{m} W_k p_k + corrections`` on the four samples
    ``i, i+1, m, m+1``::

        p_i     x (-D_{i-1}/2 - D_i t_a (1 - t_a/2))
        p_{i+1} x (-D_i t_a^2/2)
        p_m     x (-D_m/2 + D_m t_b (1 - t_b/2))
        p_{m+1} x (D_m t_b^2/2)

    (the running trapezoid integral evaluated at ``b`` minus at ``a``).  Returns
    ``(start, stop, corrections)``: the sum runs over ``start:stop``, and
    ``corrections`` is ``(R, 4)`` for the samples ``[i, i+1, m, m+1]`` (see
    :func:`_correction_indices`).  Ranges must lie within the axis.
    """
    k = frequency_ghz.size
    d = np.diff(frequency_ghz)
    d_prev = np.concatenate(([0.0], d))
    i = np.clip(np.searchsorted(frequency_ghz, lo_ghz, side="right") - 1, 0, k - 2)
    m = np.clip(np.searchsorted(frequency_ghz, hi_ghz, side="right") - 1, 0, k - 2)
    m = np.maximum(m, i)
    ta = np.clip((lo_ghz - frequency_ghz[i]) / d[i], 0.0, 1.0)
    tb = np.clip((hi_ghz - frequency_ghz[m]) / d[m], 0.0, 1.0)
    corr = np.stack(
        (
            -d_prev[i] / 2 - d[i] * ta * (1 - ta / 2),
            -d[i] * ta * ta / 2,
            -d[m] / 2 + d[m] * tb * (1 - tb / 2),
            d[m] * tb * tb / 2,
        ),
        axis=-1,
    )
    return i.astype(np.intp), (m + 1).astype(np.intp), corr


def _trapezoid_weights(frequency_ghz: FloatArray) -> FloatArray:
    d = np.diff(frequency_ghz)
    return np.concatenate(([0.0], d)) / 2 + np.concatenate((d, [0.0])) / 2


#: The whole-axis integral is summed in blocks of this many points (then the blocks
#: in float64), so that no float32 sum runs over more than a slot's worth of points.
_BLOCK_POINTS = 256


@dataclass(frozen=True, slots=True)
class _Windows:
    """Ranges of a trace as windows: ``(R, W)`` point indices with the integration
    weights of :func:`range_integration_weights` (zero where a window is padded), so
    that ``integral_r = sum_w weights[r, w] x p[idx[r, w]]`` is one gather and one
    ``einsum`` for all ranges and traces (``np.add.reduceat`` over the same ranges
    does not vectorise and took several times as long).
    """

    idx: IntArray
    weights: npt.NDArray[np.float32]

    @classmethod
    def build(
        cls, idx: IntArray, column: IntArray, range_id: IntArray, weight: FloatArray
    ) -> _Windows:
        """Windows ``idx`` and the weight entries ``(range_id, column, weight)``; the
        entries of one sample (a trapezoid weight and a correction) add up."""
        dense = np.zeros(idx.shape)
        np.add.at(dense, (range_id, column), weight)
        return cls(idx=idx, weights=dense.astype(np.float32))

    def integrate(self, window_values: npt.NDArray[np.float32]) -> FloatArray:
        """``(N, R, W)`` gathered points -> ``(N, R)`` integrals."""
        return _weighted_sums(window_values, self.weights)


def _weighted_sums(values: npt.NDArray[np.float32], weights: npt.NDArray[np.float32]) -> FloatArray:
    """``sum_w values[n, r, w] x weights[r, w]``, returned in float64.  The sums run in
    float32 over at most a few hundred points: relative error typically 1e-6 and
    bounded near 2e-5 (1e-4 dB), far below what the accuracy targets allow.

    ``einsum`` sums every ``(n, r)`` with the same loop whatever ``N`` is, so a batch
    gives exactly the numbers of its traces analysed one by one; a BLAS product would
    not (its kernel, and so its rounding, depends on the matrix shapes).
    """
    sums: npt.NDArray[np.float32] = np.einsum("nrw,rw->nr", values, weights)
    return sums.astype(np.float64)


# ---------------------------------------------------------------- the trace axis


@dataclass(frozen=True, eq=False)
class TraceAxis:
    """Everything about one frequency axis and channel plan that does not change
    from scan to scan, computed once (see the module docstring).

    Build with :meth:`build`; analyse with :func:`analyse_traces`.
    """

    plan: ChannelPlan
    config: PipelineConfig
    #: The axis as given (for cache look-ups).
    raw_frequency_thz: FloatArray
    #: Ascending, in GHz from :data:`_ANCHOR`.
    frequency_ghz: FloatArray
    channel_ghz: FloatArray
    slot_width_ghz: float
    band_ghz: float
    #: Linear calibration gain per point (in the trace's own order), or None.
    gain: npt.NDArray[np.float32] | None
    #: Per slot: the point before it, its ``L`` points in ascending frequency (padded
    #: by repeating the last), the point after it; with the slot integral's weights.
    #: Indices, like every index here, are into the trace as given: a trace is never
    #: reordered, its geometry is.
    slots: _Windows
    #: Each noise window in thirds, ``3 x (C + 1)`` ranges.
    thirds: _Windows
    #: Whole-axis integral weights, per point, zero-padded and cut into blocks of
    #: :data:`_BLOCK_POINTS`: ``(n_blocks, B)``.
    total_weights: npt.NDArray[np.float32]
    range_width_ghz: FloatArray
    n_channels: int
    #: Frequency of each slot point of ``slots`` (columns ``1:-1``) from the centre.
    slot_offset_ghz: FloatArray
    #: Linear interpolation factor of each centre between its two midpoints.
    centre_t: FloatArray
    #: Pit windows, ``(C + 1, L)``, padded by repeating a sample of the window.
    pit_idx: IntArray

    @staticmethod
    def required_span_thz(plan: ChannelPlan, config: PipelineConfig) -> tuple[float, float]:
        """The frequencies a trace must cover: every slot and every noise window."""
        mids = _midpoints_ghz(plan)
        half = config.noise_window_ghz / 2
        return (float(mids[0] - half) / 1000.0, float(mids[-1] + half) / 1000.0)

    @classmethod
    def build(
        cls,
        frequency_thz: npt.ArrayLike,
        plan: ChannelPlan,
        config: PipelineConfig,
        calibration: CalibrationConfig | None = None,
    ) -> TraceAxis:
        """Precompute the geometry; ValueError names what is wrong with the axis."""
        raw = np.array(frequency_thz, dtype=np.float64)
        if raw.ndim != 1:
            raise ValueError(f"the frequency axis must be 1-D, got shape {raw.shape}")
        if raw.size < _MIN_POINTS:
            raise ValueError(f"a trace needs at least {_MIN_POINTS} points, got {raw.size}")
        if not np.all(np.isfinite(raw)):
            raise ValueError("the frequency axis contains non-finite values")
        # `given[k]`: where the k-th lowest frequency sits in the trace as given.
        steps = np.diff(raw)
        if np.all(steps > 0):
            given = np.arange(raw.size, dtype=np.intp)
        elif np.all(steps < 0):
            given = np.arange(raw.size - 1, -1, -1, dtype=np.intp)
        else:
            given = np.argsort(raw, kind="stable").astype(np.intp)
            if np.any(np.diff(raw[given]) <= 0):
                dup = raw[given][np.flatnonzero(np.diff(raw[given]) <= 0)[0]]
                raise ValueError(f"the frequency axis has the point {dup:.6f} THz twice")
        f_thz = raw[given]
        lo_thz, hi_thz = cls.required_span_thz(plan, config)
        if f_thz[0] > lo_thz + 1e-9 or f_thz[-1] < hi_thz - 1e-9:
            raise ValueError(
                f"the trace covers {f_thz[0]:.4f}-{f_thz[-1]:.4f} THz but the channel plan "
                f"needs {lo_thz:.4f}-{hi_thz:.4f} THz (every slot and noise window)"
            )
        f = (f_thz - _ANCHOR) * 1000.0  # GHz from an anchor: keeps float64 precision
        centres = (plan.frequencies_thz - _ANCHOR) * 1000.0
        mids = _midpoints_ghz(plan) - _ANCHOR * 1000.0
        width = float(plan.spacing_ghz)
        c = centres.size

        # Ranges: C slots, then (C+1) noise windows in thirds, then the whole axis.
        w = config.noise_window_ghz
        thirds_lo = (mids[:, None] - w / 2 + w / 3 * np.arange(3)[None, :]).ravel()
        lo = np.concatenate((centres - width / 2, thirds_lo, [f[0]]))
        hi = np.concatenate((centres + width / 2, thirds_lo + w / 3, [f[-1]]))
        start, stop, coef = range_integration_weights(f, lo, hi)
        # The same integrals as (point, range, weight) entries: the trapezoid weights
        # over start:stop, then the four corrections of each range.
        n_ranges, count = start.size, stop - start
        in_range = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
        summed = np.repeat(start, count) + in_range
        point = np.concatenate((summed, _correction_indices(start, stop).ravel()))
        range_id = np.concatenate(
            (np.repeat(np.arange(n_ranges), count), np.repeat(np.arange(n_ranges), 4))
        )
        weight = np.concatenate((_trapezoid_weights(f)[summed], coef.ravel()))
        is_slot, is_third = range_id < c, (range_id >= c) & (range_id < n_ranges - 1)

        # Slots: the samples inside (for peaks and -3 dB points) and one either side
        # (the integral interpolates to the slot edges).  The integral's samples run
        # from the last point at or below the lower edge to the first above the upper.
        s0 = np.searchsorted(f, centres - width / 2, side="left")
        s1 = np.searchsorted(f, centres + width / 2, side="right")
        empty = np.flatnonzero(s1 <= s0)
        if empty.size:
            raise ValueError(
                f"the trace has no point inside the slot of channel {int(empty[0]) + 1}; "
                "its points are too far apart for this channel plan"
            )
        slot_idx = _padded_ranges(s0, s1)
        length = slot_idx.shape[1]
        slot_window = np.concatenate(
            (np.maximum(s0 - 1, 0)[:, None], slot_idx, np.minimum(s1, f.size - 1)[:, None]),
            axis=1,
        )
        k, r = point[is_slot], range_id[is_slot]
        column = np.where(k < s0[r], 0, np.where(k >= s1[r], length + 1, 1 + k - s0[r]))
        if np.any(slot_window[r, column] != k):
            raise AssertionError("slot integration samples outside their window")
        slots = _Windows.build(given[slot_window], column, r, weight[is_slot])

        # Noise-window thirds: windows of start..stop (the last correction sample).
        k, r = point[is_third], range_id[is_third] - c
        third_window = _padded_ranges(start[c:-1], stop[c:-1] + 1)
        thirds = _Windows.build(given[third_window], k - start[c:-1][r], r, weight[is_third])

        # The whole axis, as per-point weights in the trace's own order.
        n_blocks = -(-f.size // _BLOCK_POINTS)
        total_weights = np.zeros(n_blocks * _BLOCK_POINTS)
        is_total = range_id == n_ranges - 1
        np.add.at(total_weights, given[point[is_total]], weight[is_total])

        # Pits: minimum within +/- half a slot of each midpoint (clipped to the axis).
        p0 = np.minimum(np.searchsorted(f, mids - width / 2, side="left"), f.size - 1)
        p1 = np.maximum(np.searchsorted(f, mids + width / 2, side="right"), p0 + 1)

        gain = None
        if calibration is not None and calibration.wavelength_correction:
            table = np.asarray(calibration.wavelength_correction, dtype=np.float64)
            corr_db = np.interp(raw, table[:, 0], table[:, 1])
            gain = dbm_to_mw(corr_db).astype(np.float32)

        return cls(
            plan=plan,
            config=config,
            raw_frequency_thz=raw,
            frequency_ghz=f,
            channel_ghz=centres,
            slot_width_ghz=width,
            band_ghz=float(centres[-1] - centres[0]),
            gain=gain,
            slots=slots,
            thirds=thirds,
            total_weights=total_weights.astype(np.float32).reshape(n_blocks, _BLOCK_POINTS),
            range_width_ghz=hi - lo,
            n_channels=c,
            slot_offset_ghz=f[slot_idx] - centres[:, None],
            centre_t=(centres - mids[:-1]) / (mids[1:] - mids[:-1]),
            pit_idx=given[_padded_ranges(p0, p1)],
        )

    def matches(self, frequency_thz: FloatArray) -> bool:
        raw = self.raw_frequency_thz
        return raw.shape == frequency_thz.shape and bool(np.array_equal(raw, frequency_thz))


#: Frequencies inside the axis are handled as GHz from this anchor (G.694.1's 193.1 THz),
#: so that sub-MHz differences are not lost against 193,000 GHz.
_ANCHOR = 193.1


def _midpoints_ghz(plan: ChannelPlan) -> FloatArray:
    """Noise sampling points: between adjacent centres, and half a slot outside the
    first and last channel (IEC 61280-2-9; the end channels use the outer midpoints)."""
    centres = plan.frequencies_thz * 1000.0
    half = plan.spacing_ghz / 2
    inner = (centres[:-1] + centres[1:]) / 2
    return np.concatenate(([centres[0] - half], inner, [centres[-1] + half]))


def _correction_indices(start: IntArray, stop: IntArray) -> IntArray:
    """The samples ``[i, i+1, m, m+1]`` of :func:`range_integration_weights`' corrections."""
    return np.stack((start, start + 1, stop - 1, stop), axis=-1).astype(np.intp)


def _padded_ranges(start: IntArray, stop: IntArray) -> IntArray:
    """``(R, L)`` indices of the ranges ``start:stop``, each padded to the longest by
    repeating its last index (harmless for max, min and crossings)."""
    length = int((stop - start).max())
    idx: IntArray = np.minimum(start[:, None] + np.arange(length)[None, :], (stop - 1)[:, None])
    return idx.astype(np.intp)


# --------------------------------------------------------------- the analysis


@dataclass(frozen=True, slots=True)
class TraceAnalysis:
    """Results of :func:`analyse_traces`: per-channel arrays ``(N, C)``, per-scan ``(N,)``."""

    present: BoolArray
    quality: npt.NDArray[np.uint8]
    power_dbm: FloatArray
    signal_power_dbm: FloatArray
    osnr_db: FloatArray
    offset_ghz: FloatArray
    noise_psd_mw_per_ghz: FloatArray
    total_power_dbm: FloatArray
    lit_channels: npt.NDArray[np.int64]
    tilt_db: FloatArray
    flatness_db: FloatArray
    min_osnr_db: FloatArray


def _linear_trace(axis: TraceAxis, power_dbm: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """dBm trace(s) -> linear mW, float32, in the trace's own point order, zero-padded
    to whole blocks of :data:`_BLOCK_POINTS`.  Float32 because exp in float32 is
    several times faster than in float64; every sum over points ends in float64."""
    p = np.asarray(power_dbm)
    if p.ndim == 1:
        p = p[None, :]
    k = axis.raw_frequency_thz.size
    if p.ndim != 2 or p.shape[1] != k:
        raise ValueError(f"power_dbm has shape {np.shape(power_dbm)}; expected ({k},) or (N, {k})")
    lin = np.empty((p.shape[0], axis.total_weights.size), dtype=np.float32)
    lin[:, k:] = 0.0
    points = lin[:, :k]
    np.multiply(p, np.float32(LN10_OVER_10), out=points)
    np.exp(points, out=points)
    if axis.gain is not None:
        points *= axis.gain
    return lin


def analyse_traces(axis: TraceAxis, power_dbm: npt.ArrayLike, rbw_ghz: float) -> TraceAnalysis:
    """Analyse ``N`` traces sharing ``axis`` (``power_dbm`` is ``(N, K)`` or ``(K,)``).

    Per channel (IEC 61280-2-9 interpolation, see the module docstring):

    * slot power ``P = sum p_k df_k / RBW`` over centre +/- slot/2 (exact integral
      of the piecewise-linear trace);
    * noise PSD ``N(m) = mean(p)/RBW`` over a ``noise_window_ghz`` window at each
      midpoint (``midpoint``), or the minimum point within half a slot of it
      (``pit``, the AQ6370 PIT variant), linearly interpolated to the centre;
    * signal ``S = P - N(fc) x slot`` and ``OSNR = S / (N(fc) x 12.5 GHz)``;
    * offset = midpoint of the -3 dB points of the signal (half way between the
      noise level and the peak, crossings interpolated) minus the grid centre;
    * present when ``P >= detection_threshold_dbm`` and the peak stands
      ``detection_relative_db`` above the noise level in the trace;
    * ``NOISE_UNRESOLVED`` when a neighbouring noise window is not flat (see
      :data:`UNRESOLVED_CURVATURE_DB`) or the signal comes out non-positive; OSNR is
      then NaN, because interpolation would report a number nobody should trust.
    """
    if not (rbw_ghz > 0 and math.isfinite(rbw_ghz)):
        raise ValueError(f"rbw_ghz must be a positive number, got {rbw_ghz}")
    cfg = axis.config
    c = axis.n_channels
    p = _linear_trace(axis, power_dbm)
    n = p.shape[0]

    total_mw = _weighted_sums(p.reshape(n, *axis.total_weights.shape), axis.total_weights)
    total_mw = total_mw.sum(axis=-1)
    if not np.all(np.isfinite(total_mw)):
        # Rare path: NaN/inf points carry no usable power; count them as none.
        p = np.where(np.isfinite(p), p, np.float32(0.0))
        total_mw = _weighted_sums(p.reshape(n, *axis.total_weights.shape), axis.total_weights)
        total_mw = total_mw.sum(axis=-1)
    total_mw /= rbw_ghz
    window = np.take(p, axis.slots.idx, axis=1)  # (N, C, L + 2)
    slot_mw = axis.slots.integrate(window) / rbw_ghz
    third_mw = axis.thirds.integrate(np.take(p, axis.thirds.idx, axis=1)) / rbw_ghz
    thirds = (third_mw / axis.range_width_ghz[c:-1]).reshape(n, c + 1, 3)

    if cfg.noise_method == "pit":
        mid_psd = np.take(p, axis.pit_idx, axis=1).min(axis=-1).astype(np.float64)
        mid_psd /= rbw_ghz
    else:
        mid_psd = thirds.mean(axis=-1)
    t = axis.centre_t
    noise_psd = mid_psd[:, :-1] * (1 - t) + mid_psd[:, 1:] * t

    # Flatness of each noise window: outer thirds against the middle one.
    with np.errstate(divide="ignore", invalid="ignore"):
        dev = np.abs(10 * np.log10(thirds[..., [0, 2]] / thirds[..., 1:2])).max(axis=-1)
    unresolved_mid = ~(dev <= UNRESOLVED_CURVATURE_DB)
    unresolved = unresolved_mid[:, :-1] | unresolved_mid[:, 1:]

    signal_mw = signal_power_mw(slot_mw, noise_psd, axis.slot_width_ghz)
    slot_dbm = mw_to_dbm(slot_mw)

    # Peaks and -3 dB points within each slot.
    g = window[..., 1:-1]  # (N, C, L)
    peak = g.max(axis=-1).astype(np.float64)
    noise_level = noise_psd * rbw_ghz
    present = (slot_dbm >= cfg.detection_threshold_dbm) & (
        peak >= noise_level * 10 ** (cfg.detection_relative_db / 10)
    )
    offset = _centre_offset_ghz(g, (peak + noise_level) / 2, axis.slot_offset_ghz)

    bad_signal = ~(signal_mw > 0)
    quality = np.where(
        present,
        np.where(unresolved | bad_signal, Quality.NOISE_UNRESOLVED, Quality.OK),
        Quality.DARK,
    ).astype(np.uint8)
    sig_dbm = np.where(present, mw_to_dbm(signal_mw), np.nan)
    osnr = np.where(present & ~unresolved, osnr_db(signal_mw, noise_psd), np.nan)
    offset = np.where(present, offset, np.nan)

    freq = axis.channel_ghz
    lit_power = np.where(present, slot_dbm, np.nan)
    return TraceAnalysis(
        present=present,
        quality=quality,
        power_dbm=slot_dbm,
        signal_power_dbm=sig_dbm,
        osnr_db=osnr,
        offset_ghz=offset,
        noise_psd_mw_per_ghz=noise_psd,
        total_power_dbm=mw_to_dbm(total_mw),
        lit_channels=present.sum(axis=-1).astype(np.int64),
        tilt_db=tilt_db(freq, lit_power, present, axis.band_ghz),
        flatness_db=_flatness_db(lit_power, present),
        min_osnr_db=_nanmin_rows(osnr),
    )


def _centre_offset_ghz(
    g: npt.NDArray[np.float32], half_level: FloatArray, slot_offset_ghz: FloatArray
) -> FloatArray:
    """Midpoint of the outermost crossings of ``half_level`` in each slot, relative to
    the grid centre (the AQ6370's -3 dB centre, on the noise-subtracted level).

    Crossings are interpolated linearly between the samples either side.
    """
    n, c, length = g.shape
    above = g >= half_level.astype(g.dtype)[..., None]  # compared in g's float32
    first = above.argmax(axis=-1)
    last = length - 1 - above[..., ::-1].argmax(axis=-1)
    # Pick samples by (row, column) of g as (N x C, L): plain fancy indexing of a view,
    # far cheaper than take_along_axis on (N, C, L).
    g_rows = g.reshape(n * c, length)
    row = np.arange(n * c).reshape(n, c)
    chan = np.arange(c)

    def at(i: IntArray) -> tuple[FloatArray, FloatArray]:
        return g_rows[row, i].astype(np.float64), slot_offset_ghz[chan, i]

    (g_b, f_b), (g_f, f_f) = at(np.maximum(first - 1, 0)), at(first)
    (g_l, f_l), (g_a, f_a) = at(last), at(np.minimum(last + 1, length - 1))
    hh = half_level
    with np.errstate(divide="ignore", invalid="ignore"):
        rise = np.where(g_f > g_b, f_b + (hh - g_b) / (g_f - g_b) * (f_f - f_b), f_f)
        fall = np.where(g_l > g_a, f_l + (g_l - hh) / (g_l - g_a) * (f_a - f_l), f_l)
    return np.asarray((rise + fall) / 2, dtype=np.float64)


# --------------------------------------------------------------- the pipeline


class _AxisCache:
    """The last few trace axes seen (a device normally has one; a user may switch)."""

    def __init__(self, size: int = 4) -> None:
        self._size = size
        self._entries: list[TraceAxis] = []
        self._lock = threading.Lock()

    def get(
        self,
        frequency_thz: FloatArray,
        plan: ChannelPlan,
        config: PipelineConfig,
        calibration: CalibrationConfig,
    ) -> TraceAxis:
        with self._lock:
            for i, axis in enumerate(self._entries):
                if axis.matches(frequency_thz):
                    if i:
                        self._entries.insert(0, self._entries.pop(i))
                    return axis
        axis = TraceAxis.build(frequency_thz, plan, config, calibration)
        with self._lock:
            self._entries.insert(0, axis)
            del self._entries[self._size :]
        return axis


@dataclass(frozen=True, slots=True)
class _PortMap:
    """The device's port grid mapped onto the plan, with calibration (per grid)."""

    port_frequency_thz: FloatArray
    #: ``port_frequency_thz.tobytes()``: a cheap exact comparison for the next scan.
    key: bytes
    channel_port: IntArray
    offset_db: FloatArray | None


@dataclass(frozen=True, slots=True)
class _LitSet:
    """What a port reading derives from *which* channels are lit alone.  The lit set
    rarely changes from scan to scan, so this is computed once per set, not per scan."""

    #: ``present.tobytes()`` of the set.
    key: bytes
    count: int
    #: :func:`tilt_db` of one scan as a dot product with the lit powers (None when
    #: fewer than two channels are lit); see :func:`_tilt_weights`.
    tilt_weights: FloatArray | None
    #: Read-only, shared by the readings of this set.
    quality: npt.NDArray[np.uint8]


def _tilt_weights(frequency_ghz: FloatArray, band_ghz: float) -> FloatArray | None:
    """Weights ``a`` with ``tilt_db = a @ power_dbm`` over these (lit) channels.

    The least-squares slope is ``sum (x_i - x_mean)(y_i - y_mean) / S_xx`` with
    ``S_xx = sum (x_i - x_mean)^2``; since ``sum (x_i - x_mean) = 0`` the ``y_mean`` term
    vanishes, leaving ``a_i = (x_i - x_mean) / S_xx`` (the slope row of the
    pseudo-inverse of the design matrix ``[1, x]``), times ``band_ghz`` as in
    :func:`tilt_db`.  None when fewer than two distinct frequencies are lit.
    """
    dx = frequency_ghz - frequency_ghz.mean() if frequency_ghz.size else frequency_ghz
    sxx = float(dx @ dx)
    if frequency_ghz.size < _MIN_POINTS or not sxx > 0:
        return None
    weights = dx * (band_ghz / sxx)
    weights.flags.writeable = False
    return weights


class Pipeline:
    """Turns one device's raw scans into :class:`~odpm.models.Reading` objects.

    One per device, because it holds alarm state.  :meth:`process` is called from
    the acquisition worker thread; :meth:`set_alarm_config` may be called from any
    thread (the API) at the same time.
    """

    def __init__(
        self,
        plan: ChannelPlan,
        config: PipelineConfig,
        alarms: AlarmConfig,
        calibration: CalibrationConfig,
    ) -> None:
        self.plan = plan
        self.config = config
        self.calibration = calibration
        self._channels = plan.channel_numbers
        self._centres_thz = plan.frequencies_thz
        self._centres_ghz = (self._centres_thz - _ANCHOR) * 1000.0
        self._band_ghz = float(self._centres_ghz[-1] - self._centres_ghz[0])
        # Shared read-only arrays for values a port reading cannot have.
        self._nan = np.full(plan.count, np.nan)
        self._nan.flags.writeable = False
        self._axes = _AxisCache()
        self._port_map: _PortMap | None = None
        # The last lit set of a port reading (replaced whole; read by one worker thread).
        self._lit_set: _LitSet | None = None
        self._alarms = AlarmEngine(plan, alarms)
        if calibration.port_offsets_db:
            self._port_offsets: FloatArray | None = np.asarray(
                calibration.port_offsets_db, dtype=np.float64
            )
        else:
            self._port_offsets = None

    # -- configuration

    def set_alarm_config(self, alarms: AlarmConfig) -> None:
        """Swap thresholds at run time; active alarms are re-judged on the next scan."""
        self._alarms.configure(alarms)

    def device_lost(
        self, device_id: str, time: datetime, silent_s: float, limit_s: float
    ) -> AlarmEvent | None:
        """Raise the device-wide ``device_lost`` alarm (None if already active); the
        next :meth:`process` clears it.  See :meth:`AlarmEngine.device_lost`."""
        return self._alarms.device_lost(device_id, time, silent_s, limit_s)

    def restore_alarms(self, events: Iterable[AlarmEvent]) -> None:
        """Alarms a previous run left active; see :meth:`AlarmEngine.restore`."""
        self._alarms.restore(events)

    @property
    def alarm_config(self) -> AlarmConfig:
        return self._alarms.config

    def trace_axis(self, frequency_thz: npt.ArrayLike) -> TraceAxis:
        """The cached geometry for an axis (built on first use)."""
        f = np.asarray(frequency_thz, dtype=np.float64)
        return self._axes.get(f, self.plan, self.config, self.calibration)

    # -- processing

    def process(self, scan: RawScan) -> Reading:
        if isinstance(scan, TraceScan):
            return self._process_trace(scan)
        if isinstance(scan, PortScan):
            return self._process_ports(scan)
        raise TypeError(f"cannot analyse a {type(scan).__name__}")

    def _process_trace(self, scan: TraceScan) -> Reading:
        axis = self.trace_axis(scan.frequency_thz)
        r = analyse_traces(axis, scan.power_dbm, scan.rbw_ghz)
        return self._reading(
            scan,
            present=r.present[0],
            quality=r.quality[0],
            power_dbm=r.power_dbm[0],
            signal_power_dbm=r.signal_power_dbm[0],
            osnr=r.osnr_db[0],
            offset_ghz=r.offset_ghz[0],
            total_power_dbm=float(r.total_power_dbm[0]),
            lit_channels=int(r.lit_channels[0]),
            tilt=float(r.tilt_db[0]),
            flatness=float(r.flatness_db[0]),
            min_osnr=float(r.min_osnr_db[0]),
        )

    def _ports(self, port_frequency_thz: FloatArray) -> _PortMap:
        pf = np.asarray(port_frequency_thz, dtype=np.float64)
        cached = self._port_map
        # Exact comparison, and ~20x cheaper than np.array_equal at this size.
        if cached is not None and pf.ndim == 1 and pf.tobytes() == cached.key:
            return cached
        pf = pf.copy()
        if pf.ndim != 1 or pf.size < _MIN_POINTS:
            raise ValueError("a port scan needs at least two port frequencies")
        spacing_ghz = float(np.round((pf[1] - pf[0]) * 1000.0, 3))
        grid = PortGrid(first_thz=float(pf[0]), spacing_ghz=spacing_ghz, count=int(pf.size))
        if not np.allclose(grid.frequencies_thz, pf, atol=1e-6):
            raise ValueError("the device's port frequencies are not a regular grid")
        offset = np.zeros(pf.size)
        if self._port_offsets is not None:
            if self._port_offsets.size != pf.size:
                raise ValueError(
                    f"calibration has {self._port_offsets.size} port offsets "
                    f"but the device has {pf.size} ports"
                )
            offset = offset + self._port_offsets
        table = self.calibration.wavelength_correction
        if table:
            t = np.asarray(table, dtype=np.float64)
            offset = offset + np.interp(pf, t[:, 0], t[:, 1])
        has_offset = bool(self._port_offsets is not None or table)
        pm = _PortMap(
            pf, pf.tobytes(), self.plan.port_indices(grid), offset if has_offset else None
        )
        self._port_map = pm
        return pm

    def _lit(self, present: BoolArray) -> _LitSet:
        key = present.tobytes()
        cached = self._lit_set
        if cached is not None and cached.key == key:
            return cached
        quality = np.where(present, np.uint8(Quality.POWER_ONLY), np.uint8(Quality.DARK))
        quality.flags.writeable = False
        lit = _LitSet(
            key=key,
            count=int(present.sum()),
            tilt_weights=_tilt_weights(self._centres_ghz[present], self._band_ghz),
            quality=quality,
        )
        self._lit_set = lit
        return lit

    def _process_ports(self, scan: PortScan) -> Reading:
        # Written for a small op count: at 80 channels every numpy call costs about
        # a microsecond against a 50 us budget, so everything that depends only on
        # the port grid or the lit set is cached (_ports, _lit) and this path avoids
        # temporaries it does not need.
        pm = self._ports(scan.port_frequency_thz)
        ports = np.asarray(scan.power_dbm, dtype=np.float64)
        if ports.shape != pm.port_frequency_thz.shape:
            raise ValueError(
                f"port scan has {ports.size} powers for {pm.port_frequency_thz.size} ports"
            )
        if pm.offset_db is not None:
            ports = ports + pm.offset_db
        power = ports.take(pm.channel_port)
        present = power >= self.config.detection_threshold_dbm  # NaN compares False
        lit = self._lit(present)
        lit_power = power if lit.count == power.size else power[present]
        if lit.count:
            flatness = float(np.maximum.reduce(lit_power) - np.minimum.reduce(lit_power))
        else:
            flatness = math.nan
        tilt = math.nan if lit.tilt_weights is None else float(lit.tilt_weights @ lit_power)
        # Total: linear sum over all ports; fmax turns NaN (below floor) into -inf,
        # whose exp is 0, so no NaN-aware reduction is needed.
        lin = np.multiply(ports, LN10_OVER_10)
        np.fmax(lin, -np.inf, out=lin)
        total = float(np.add.reduce(np.exp(lin, out=lin)))
        return self._reading(
            scan,
            present=present,
            quality=lit.quality,
            power_dbm=power,
            signal_power_dbm=self._nan,
            osnr=self._nan,
            offset_ghz=self._nan,
            total_power_dbm=10 * math.log10(total) if total > 0 else math.nan,
            lit_channels=lit.count,
            tilt=tilt,
            flatness=flatness,
            min_osnr=math.nan,
        )

    def _reading(
        self,
        scan: RawScan,
        *,
        present: BoolArray,
        quality: npt.NDArray[np.uint8],
        power_dbm: FloatArray,
        signal_power_dbm: FloatArray,
        osnr: FloatArray,
        offset_ghz: FloatArray,
        total_power_dbm: float,
        lit_channels: int,
        tilt: float,
        flatness: float,
        min_osnr: float,
    ) -> Reading:
        events = self._alarms.evaluate(
            scan.device_id,
            scan.time,
            present=present,
            power_dbm=power_dbm,
            osnr_db=osnr,
            offset_ghz=offset_ghz,
            total_power_dbm=total_power_dbm,
        )
        return Reading(
            device_id=scan.device_id,
            time=scan.time,
            mode=scan.mode,
            channel=self._channels,
            frequency_thz=self._centres_thz,
            present=present,
            power_dbm=power_dbm,
            signal_power_dbm=signal_power_dbm,
            osnr_db=osnr,
            offset_ghz=offset_ghz,
            quality=quality,
            total_power_dbm=total_power_dbm,
            lit_channels=lit_channels,
            tilt_db=tilt,
            flatness_db=flatness,
            min_osnr_db=min_osnr,
            temperature_c=scan.temperature_c,
            alarms=events,
        )
