"""The per-device :class:`Pipeline`: raw scans in, :class:`~odpm.models.Reading` out."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable
from datetime import datetime

import numpy as np
import numpy.typing as npt

from odpm.alarms import AlarmEngine
from odpm.config import AlarmConfig, CalibrationConfig, PipelineConfig
from odpm.grid import ChannelPlan, PortGrid
from odpm.models import AlarmEvent, FloatArray, PortScan, Quality, RawScan, Reading, TraceScan
from odpm.pipeline.axis import TraceAxis
from odpm.pipeline.formulas import _ANCHOR, _MIN_POINTS, BoolArray, IntArray
from odpm.pipeline.interpolation import analyse_traces
from odpm.pipeline.ports import _LitSet, _PortMap, _tilt_weights
from odpm.units import LN10_OVER_10

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
        self._widths_ghz = plan.widths_ghz
        self._widths_ghz.flags.writeable = False
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
        r = analyse_traces(
            axis,
            scan.power_dbm,
            scan.rbw_ghz,
            noise_dbm=scan.noise_power_dbm,
            reference_dbm=scan.reference_power_dbm,
        )
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
            osnr_method=r.osnr_method[0],
            osnr_uncertainty_db=r.osnr_uncertainty_db[0],
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
        cover: tuple[npt.NDArray[np.int64], BoolArray] | None = None
        if self.plan.is_flex:
            # A flex channel is the linear sum of the ports its slot covers (docs:
            # "Port mode on a flexible grid"); one port per slot keeps the fast path.
            cover_idx, cover_valid = self.plan.port_coverage(grid)
            if cover_idx.shape[1] > 1:
                cover = (cover_idx, cover_valid)
            channel_port = cover_idx[:, 0]
        else:
            channel_port = self.plan.port_indices(grid)
        pm = _PortMap(pf, pf.tobytes(), channel_port, offset if has_offset else None, cover)
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
        if pm.cover is None:
            power = ports.take(pm.channel_port)
        else:
            power = _summed_ports_dbm(ports, *pm.cover)
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
        osnr_method: npt.NDArray[np.uint8] | None = None,
        osnr_uncertainty_db: FloatArray | None = None,
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
            width_ghz=self._widths_ghz,
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
            osnr_method=osnr_method,
            osnr_uncertainty_db=osnr_uncertainty_db,
        )


def _summed_ports_dbm(ports_dbm: FloatArray, idx: IntArray, valid: BoolArray) -> FloatArray:
    """Each flex channel's power: the linear sum of the ports its slot covers (``idx``,
    ``valid`` from :meth:`ChannelPlan.port_coverage`).  A port below the floor (NaN)
    adds nothing; a channel whose ports are all below the floor stays NaN."""
    lin = np.where(valid, 10.0 ** (ports_dbm[idx] / 10.0), 0.0)
    floor = np.isnan(lin)
    total = np.where(floor, 0.0, lin).sum(axis=1)
    below = np.all(floor | ~valid, axis=1)
    with np.errstate(divide="ignore"):
        return np.where(below, np.nan, 10.0 * np.log10(total))
