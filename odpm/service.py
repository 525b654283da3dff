"""The running service: one acquisition worker and pipeline per device, storage, live streams.

This module is the wiring.  Each stage is reached through the small protocols
below (what the service needs of it, nothing more), so the service can run in
three shapes from the same code:

* full (default): workers acquire, the pipeline analyses, the journal stores,
  the forwarder ships to InfluxDB, the API serves;
* agent (``odpm serve --no-api``): the same without HTTP;
* replica (``odpm serve --no-acquisition``): no workers; the API answers from
  storage, refreshing its latest-reading cache from it periodically.

Everything the API reads is in memory here (latest reading and trace per device,
the worker's own state snapshot, the cached ``*IDN?`` answer, active alarms) or
in storage; only :meth:`Service.scan_now` talks to a device.

Worker threads call :meth:`Service.ingest` for every scan: pipeline, then journal
(which returns once committed, so a reading counts as stored only when it is),
then the latest cache, active alarms and live streams.  A per-device lock keeps
the pipeline's alarm state consistent when an API-requested scan arrives at the
same time as a scheduled one.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from odpm.config import AlarmConfig, DeviceConfig, InfluxConfig, Settings, StorageConfig
from odpm.grid import ChannelPlan
from odpm.live import Broadcaster
from odpm.models import AlarmEvent, Mode, RawScan, Reading, TraceScan

if TYPE_CHECKING:
    from drivers.simulator.server import SimulatorServer
    from odpm.storage.history import ChannelHistory

log = logging.getLogger(__name__)

#: Counters every worker reports (names as exported to Prometheus).
COUNTER_NAMES = ("scans", "errors", "reconnects", "crc_failures", "lost_frames")
#: How often a replica (no acquisition) re-reads the latest readings from storage.
REPLICA_REFRESH_S = 5.0
#: How long ``stop`` lets the forwarder ship the journal's last rows.
FORWARDER_DRAIN_S = 4.0
#: How long ``stop`` waits for each worker thread.
WORKER_STOP_TIMEOUT_S = 3.0


# --- what the service needs of each stage -------------------------------------------------


class Worker(Protocol):
    @property
    def state(self) -> str: ...
    @property
    def identity(self) -> str | None: ...
    @property
    def last_error(self) -> str | None: ...
    @property
    def last_scan_time(self) -> datetime | None: ...
    @property
    def counters(self) -> Any: ...
    def start(self) -> None: ...
    def stop(self, timeout_s: float = ...) -> Any: ...
    def reconfigure(
        self,
        *,
        mode: Mode | None = None,
        interval_s: float | None = None,
        averaging: int | None = None,
        running: bool | None = None,
    ) -> Any: ...
    def request_scan(self, mode: Mode | None = None) -> concurrent.futures.Future[RawScan]: ...


class Analyser(Protocol):
    def process(self, scan: RawScan) -> Reading: ...
    def set_alarm_config(self, alarms: AlarmConfig) -> None: ...


class Store(Protocol):
    """The journal: durable appends, latest readings, alarm events, backlog."""

    def append(self, reading: Reading) -> int: ...
    def latest(self, device_id: str) -> Reading | None: ...
    def alarm_events(
        self, device: str | None = None, since: datetime | None = None, limit: int = 100
    ) -> list[AlarmEvent]: ...
    def close(self) -> None: ...


#: Builds a worker for a device with the service's scan callback.
WorkerFactory = Callable[[DeviceConfig, Callable[[RawScan], None]], Worker]
#: Builds a pipeline for a device's channel plan.
PipelineFactory = Callable[[DeviceConfig, AlarmConfig], Analyser]


class ServiceError(Exception):
    """A request the service cannot honour (the API maps subclasses to status codes)."""


class UnknownDeviceError(ServiceError, KeyError):
    def __init__(self, device_id: str) -> None:
        super().__init__(device_id)
        self.device_id = device_id

    def __str__(self) -> str:
        return f"unknown device {self.device_id!r}"


class NotAvailableError(ServiceError):
    """The operation needs something this service does not have (e.g. acquisition)."""


class ThresholdError(ServiceError, ValueError):
    """Thresholds that do not fit the devices; ``parameter`` names the culprit."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter
        self.message = message


# --- per-device state -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class DeviceSnapshot:
    """What the API shows about a device, read without touching the device."""

    id: str
    driver: str
    address: str
    identity: str | None
    state: str
    mode: Mode
    interval_s: float
    averaging: int
    enabled: bool
    channels: int
    last_scan_time: datetime | None
    last_error: str | None
    counters: dict[str, int]
    readings_stored: int
    processing_errors: int


class _Encoded:
    """A value with its JSON encoding computed at most once, on first request.

    Readings arrive far more often than anyone asks for them (200 devices at
    1 Hz); encoding only what is read keeps ingest cheap and repeated reads free.
    """

    __slots__ = ("_encode", "_json", "value")

    def __init__(self, value: Any, encode: Callable[[Any], bytes]) -> None:
        self.value = value
        self._encode = encode
        self._json: bytes | None = None

    @property
    def json(self) -> bytes:
        if self._json is None:  # a race computes it twice, harmlessly
            self._json = self._encode(self.value)
        return self._json


def _counters_dict(counters: Any) -> dict[str, int]:
    """Worker counters as a plain dict whatever their container (dataclass, mapping)."""
    if counters is None:
        return dict.fromkeys(COUNTER_NAMES, 0)
    if dataclasses.is_dataclass(counters) and not isinstance(counters, type):
        raw = dataclasses.asdict(counters)
    elif isinstance(counters, Mapping):
        raw = dict(counters)
    else:
        raw = {k: getattr(counters, k, 0) for k in COUNTER_NAMES}
    return {k: int(raw.get(k, 0) or 0) for k in COUNTER_NAMES}


class DeviceRuntime:
    """One device: its config, worker, pipeline and latest cached data."""

    def __init__(
        self, config: DeviceConfig, pipeline: Analyser | None, worker: Worker | None = None
    ) -> None:
        self.config = config
        self.plan: ChannelPlan = config.plan.to_plan()
        self.pipeline = pipeline
        self.worker = worker
        #: Serialises pipeline + journal for this device (alarm state, row order).
        self.lock = threading.Lock()
        self.latest: _Encoded | None = None
        self.trace: _Encoded | None = None
        #: The last few (scan, reading) pairs, so POST /scan finds the reading of
        #: *its* scan even if a scheduled one has replaced ``latest`` since.
        self.recent: collections.deque[tuple[RawScan, _Encoded]] = collections.deque(maxlen=16)
        # Requested settings, shown by the API (the worker owns the real ones).
        self.mode: Mode = config.mode
        self.interval_s = config.interval_s
        self.averaging = config.averaging
        self.running = config.enabled
        self.identity: str | None = None
        self.readings_stored = 0
        self.processing_errors = 0
        self.stored_time: datetime | None = None

    @property
    def id(self) -> str:
        return self.config.id

    def snapshot(self) -> DeviceSnapshot:
        w = self.worker
        if w is not None:
            state = str(w.state)
            counters = _counters_dict(w.counters)
            last_error = w.last_error
            last_scan = w.last_scan_time
            ident = w.identity
            if ident:
                self.identity = ident
        else:
            state = "replica"
            counters = _counters_dict(None)
            last_error = None
            last_scan = None
        if last_scan is None and self.latest is not None:
            last_scan = self.latest.value.time
        return DeviceSnapshot(
            id=self.id,
            driver=self.config.driver,
            address=self.config.address,
            identity=self.identity,
            state=state,
            mode=self.mode,
            interval_s=self.interval_s,
            averaging=self.averaging,
            enabled=self.running,
            channels=self.plan.count,
            last_scan_time=last_scan,
            last_error=last_error,
            counters=counters,
            readings_stored=self.readings_stored,
            processing_errors=self.processing_errors,
        )


# --- JSON encodings of cached data -------------------------------------------------------


def encode_reading(reading: Reading) -> bytes:
    import json

    return json.dumps(reading.to_dict(), allow_nan=False, separators=(",", ":")).encode()


def trace_dict(scan: TraceScan) -> dict[str, Any]:
    import numpy as np

    power = np.round(np.asarray(scan.power_dbm, dtype=np.float64), 3)
    return {
        "device": scan.device_id,
        "time": scan.time.isoformat(),
        "rbw_ghz": float(scan.rbw_ghz),
        "temperature_c": scan.temperature_c,
        "frequency_thz": np.round(np.asarray(scan.frequency_thz, dtype=np.float64), 6).tolist(),
        # Points below the floor are NaN; JSON has no NaN, so they become null.
        "power_dbm": [None if p != p else p for p in power.tolist()],
    }


def encode_trace(scan: TraceScan) -> bytes:
    import json

    return json.dumps(trace_dict(scan), allow_nan=False, separators=(",", ":")).encode()


# --- the service ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class StorageStatus:
    """Storage health for /health and /metrics (numbers are None when unknown)."""

    journal_open: bool
    backlog_rows: int | None
    oldest_unforwarded_age_s: float | None
    forwarded_rows: int | None
    dropped_rows: int | None
    quarantined_batches: int | None
    forwarder_state: str | None
    forwarder_error: str | None
    influx_configured: bool
    influx_reachable: bool | None


class Service:
    """The acquisition service: build with :meth:`from_settings`, then ``start``/``stop``.

    ``journal``, ``forwarder`` and ``history`` may be None (replicas on InfluxDB
    have no journal; journal-only setups have no forwarder).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        devices: Iterable[DeviceConfig] = (),
        journal: Store | None = None,
        forwarder: Any = None,
        history: Any = None,
        worker_factory: WorkerFactory | None = None,
        pipeline_factory: PipelineFactory | None = None,
        acquisition: bool = True,
        broadcaster: Broadcaster | None = None,
        on_close: Iterable[Callable[[], None]] = (),
    ) -> None:
        self.settings = settings
        self.alarm_config: AlarmConfig = settings.alarms
        self.journal = journal
        self.forwarder = forwarder
        self.history = history
        self.acquisition = acquisition
        self.broadcaster = broadcaster or Broadcaster()
        self._worker_factory = worker_factory
        self._on_close = list(on_close)
        self._lock = threading.Lock()
        #: Active alarms keyed by (device, kind, channel); the last raising event.
        self._active_alarms: dict[tuple[str, str, int | None], AlarmEvent] = {}
        self.devices: dict[str, DeviceRuntime] = {}
        for cfg in devices:
            pipeline = pipeline_factory(cfg, self.alarm_config) if pipeline_factory else None
            self.devices[cfg.id] = DeviceRuntime(cfg, pipeline)
        self.started = False
        self.stopping = False
        self.started_at: float | None = None
        self.influx_reachable: bool | None = None
        self._replica_stop = threading.Event()
        self._replica_thread: threading.Thread | None = None

    # -- construction -----------------------------------------------------------------

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        simulate: int = 0,
        simulate_options: Mapping[str, Any] | None = None,
        acquisition: bool = True,
        broadcaster: Broadcaster | None = None,
    ) -> Service:
        """The real thing: drivers, pipeline, journal, forwarder and history store.

        ``simulate`` starts that many simulated ODPM-96s, each on its own loopback
        TCP port, and adds them as devices ``sim1..simN`` reached through the
        normal driver and transport (so a demo runs the real code path);
        ``simulate_options`` are DeviceConfig fields for them (e.g. ``interval_s``).
        """
        from odpm.acquisition import AcquisitionWorker
        from odpm.pipeline import Pipeline

        closers: list[Callable[[], None]] = []
        devices = [d for d in settings.devices]
        if simulate and acquisition:
            sims, sim_devices = start_simulators(
                simulate, taken={d.id for d in devices}, options=simulate_options
            )
            closers.extend(s.close for s in sims)
            devices.extend(sim_devices)

        journal, forwarder, history = open_storage(settings.storage, forward=acquisition)

        def make_pipeline(cfg: DeviceConfig, alarms: AlarmConfig) -> Analyser:
            return Pipeline(cfg.plan.to_plan(), settings.pipeline, alarms, cfg.calibration)

        def make_worker(cfg: DeviceConfig, on_scan: Callable[[RawScan], None]) -> Worker:
            worker: Worker = AcquisitionWorker(cfg, on_scan)
            return worker

        try:
            return cls(
                settings,
                devices=devices,
                journal=journal,
                forwarder=forwarder,
                history=history,
                worker_factory=make_worker if acquisition else None,
                pipeline_factory=make_pipeline,
                acquisition=acquisition,
                broadcaster=broadcaster,
                on_close=closers,
            )
        except BaseException:
            for close in closers:
                with contextlib.suppress(Exception):
                    close()
            raise

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Rebuild the latest cache from storage, then start forwarder and workers."""
        if self.started:
            return
        self.refresh_latest_from_storage()
        if self.forwarder is not None and hasattr(self.forwarder, "start"):
            self.forwarder.start()
        if self.acquisition and self._worker_factory is not None:
            for dev in self.devices.values():
                dev.worker = self._worker_factory(dev.config, self._make_on_scan(dev))
                if dev.config.enabled:
                    dev.worker.start()
        elif not self.acquisition:
            self._replica_thread = threading.Thread(
                target=self._replica_loop, name="odpm-replica-refresh", daemon=True
            )
            self._replica_thread.start()
        self.started = True
        self.started_at = time.monotonic()
        log.info(
            "service started: %d device(s), acquisition %s, journal %s, influxdb %s",
            len(self.devices),
            "on" if self.acquisition else "off",
            "on" if self.journal is not None else "off",
            self.settings.storage.influx.url or "off",
        )

    def stop(self) -> None:
        """Stop workers (closing their transports), then flush forwarder and journal.

        Workers stop in parallel so shutdown takes one worker's stop time, not N.
        """
        self.stopping = True
        workers = [d.worker for d in self.devices.values() if d.worker is not None]
        if workers:
            with concurrent.futures.ThreadPoolExecutor(
                max_workers=min(32, len(workers)), thread_name_prefix="odpm-stop"
            ) as pool:
                for f in [pool.submit(w.stop, WORKER_STOP_TIMEOUT_S) for w in workers]:
                    try:
                        f.result()
                    except Exception:
                        log.exception("stopping a worker failed")
        self._replica_stop.set()
        if self._replica_thread is not None:
            self._replica_thread.join(timeout=5)
        for close in self._on_close:
            try:
                close()
            except Exception:
                log.exception("closing a simulator failed")
        # The forwarder ships what the journal holds: after the last append, give
        # it a bounded moment to catch up, so a clean stop leaves InfluxDB
        # complete; what it cannot ship stays in the journal for the next start.
        if self.forwarder is not None:
            try:
                if hasattr(self.forwarder, "wait_drained") and self.influx_reachable is not False:
                    self.forwarder.wait_drained(FORWARDER_DRAIN_S)
                self.forwarder.stop()
            except Exception:
                log.exception("stopping the forwarder failed")
        if self.journal is not None:
            try:
                self.journal.close()
            except Exception:
                log.exception("closing the journal failed")
        if self.history is not None and hasattr(self.history, "close"):
            with contextlib.suppress(Exception):
                self.history.close()
        self.started = False
        log.info("service stopped")

    # -- the scan path ------------------------------------------------------------------

    def _make_on_scan(self, dev: DeviceRuntime) -> Callable[[RawScan], None]:
        def on_scan(scan: RawScan) -> None:
            self.ingest(dev, scan)

        return on_scan

    def ingest(self, dev: DeviceRuntime, scan: RawScan) -> Reading | None:
        """Analyse, store (committed), cache and publish one scan; called on worker threads.

        Never raises: a scan that cannot be analysed or stored is counted and
        logged, and acquisition goes on.
        """
        if dev.pipeline is None:
            return None
        with dev.lock:
            try:
                reading = dev.pipeline.process(scan)
            except Exception:
                dev.processing_errors += 1
                log.exception("%s: analysing a %s scan failed", dev.id, scan.mode)
                return None
            if self.journal is not None:
                try:
                    self.journal.append(reading)
                except Exception:
                    dev.processing_errors += 1
                    log.exception("%s: storing a reading failed", dev.id)
                    return None
            dev.readings_stored += 1
            dev.latest = _Encoded(reading, encode_reading)
            dev.recent.append((scan, dev.latest))
            if isinstance(scan, TraceScan):
                dev.trace = _Encoded(scan, encode_trace)
        if reading.alarms:
            self._note_alarms(reading.alarms)
        self._publish(dev.id, reading)
        return reading

    def _publish(self, device_id: str, reading: Reading) -> None:
        try:
            self.broadcaster.publish(device_id, "reading", reading.to_dict)
            for event in reading.alarms:
                self.broadcaster.publish(device_id, "alarm", event.to_dict)
        except Exception:
            log.exception("%s: publishing a reading to live streams failed", device_id)

    def _note_alarms(self, events: Iterable[AlarmEvent]) -> None:
        with self._lock:
            for e in events:
                key = (e.device_id, e.kind.value, e.channel)
                if e.active:
                    self._active_alarms[key] = e
                else:
                    self._active_alarms.pop(key, None)

    # -- queries (memory and storage only) -----------------------------------------------

    def device(self, device_id: str) -> DeviceRuntime:
        try:
            return self.devices[device_id]
        except KeyError:
            raise UnknownDeviceError(device_id) from None

    def active_alarms(self, device_id: str | None = None) -> list[AlarmEvent]:
        with self._lock:
            events = list(self._active_alarms.values())
        if device_id is not None:
            events = [e for e in events if e.device_id == device_id]
        return sorted(events, key=lambda e: (e.device_id, e.channel or 0, e.kind.value))

    def recent_alarm_events(self, device_id: str | None, limit: int) -> list[AlarmEvent]:
        """Raise/clear events from the journal, newest first."""
        if self.journal is None:
            return []
        events: list[AlarmEvent] = list(self.journal.alarm_events(device=device_id, limit=limit))
        events.sort(key=lambda e: e.time, reverse=True)
        return events[:limit]

    def refresh_latest_from_storage(self) -> None:
        """Fill the latest cache from storage (start-up, and replicas periodically)."""
        source: Any = self.journal if self.journal is not None else self.history
        if source is None or not hasattr(source, "latest"):
            return
        for dev in self.devices.values():
            try:
                reading = source.latest(dev.id)
            except Exception:
                log.warning("%s: could not read the latest reading from storage", dev.id)
                continue
            if reading is None:
                continue
            with dev.lock:
                if dev.latest is None or dev.latest.value.time < reading.time:
                    dev.latest = _Encoded(reading, encode_reading)
        if self.journal is not None:
            try:
                past = list(self.journal.alarm_events(limit=10_000))
            except Exception:
                log.warning("could not read alarm events from the journal")
                return
            past.sort(key=lambda e: e.time)
            with self._lock:
                self._active_alarms.clear()
            self._note_alarms(past)

    def channel_history(
        self, device_id: str, channel: int, start: datetime, end: datetime, every_s: float
    ) -> ChannelHistory:
        """One channel in buckets, from the history store (blocking: call in a thread).

        Raises the store's ``HistoryQueryError`` (a ValueError naming the
        parameter) for a query it refuses.
        """
        if self.history is None:
            raise NotAvailableError("no history store is configured")
        result: ChannelHistory = self.history.channel_history(
            device_id, channel, start, end, every_s
        )
        return result

    def _replica_loop(self) -> None:
        while not self._replica_stop.wait(REPLICA_REFRESH_S):
            self.refresh_latest_from_storage()

    # -- control ------------------------------------------------------------------------

    def set_thresholds(self, alarms: AlarmConfig) -> AlarmConfig:
        """Apply new alarm thresholds to every device's pipeline (next scan on).

        Channel numbers are checked against every device's plan first, so a
        refused change leaves every device on the old thresholds.
        """
        for dev in self.devices.values():
            n = dev.plan.count
            bad = [c for c in alarms.expected_channels if not 1 <= c <= n]
            if bad:
                raise ThresholdError(
                    "expected_channels", f"channel {bad[0]} is not in {dev.id}'s plan (1..{n})"
                )
            bad = [c for c in alarms.channels if not 1 <= c <= n]
            if bad:
                raise ThresholdError(
                    "channels", f"channel {bad[0]} is not in {dev.id}'s plan (1..{n})"
                )
        for dev in self.devices.values():
            if dev.pipeline is not None:
                with dev.lock:
                    dev.pipeline.set_alarm_config(alarms)
        self.alarm_config = alarms
        return alarms

    def reconfigure(
        self,
        device_id: str,
        *,
        running: bool | None = None,
        mode: Mode | None = None,
        interval_s: float | None = None,
        averaging: int | None = None,
    ) -> DeviceSnapshot:
        dev = self.device(device_id)
        if dev.worker is None:
            raise NotAvailableError("this service runs without acquisition (--no-acquisition)")
        dev.worker.reconfigure(
            mode=mode, interval_s=interval_s, averaging=averaging, running=running
        )
        if mode is not None:
            dev.mode = mode
        if interval_s is not None:
            dev.interval_s = interval_s
        if averaging is not None:
            dev.averaging = averaging
        if running is not None:
            dev.running = running
        return dev.snapshot()

    def request_scan(self, device_id: str, mode: Mode | None) -> concurrent.futures.Future[RawScan]:
        dev = self.device(device_id)
        if dev.worker is None:
            raise NotAvailableError("this service runs without acquisition (--no-acquisition)")
        return dev.worker.request_scan(mode)

    def reading_of(self, device_id: str, scan: RawScan) -> _Encoded | None:
        """The stored reading made from ``scan`` (None if it could not be analysed/stored)."""
        dev = self.device(device_id)
        with dev.lock:
            for got_scan, encoded in reversed(dev.recent):
                if got_scan is scan:
                    return encoded
        return None

    # -- health ---------------------------------------------------------------------------

    def storage_status(self) -> StorageStatus:
        backlog: int | None = None
        age: float | None = None
        forwarded: int | None = None
        dropped: int | None = None
        quarantined: int | None = None
        state: str | None = None
        error: str | None = None
        stats = _safe_attr(self.forwarder, "stats")
        if stats is not None:
            backlog = _int_or_none(_first_attr(stats, "backlog_rows", "backlog"))
            age = _float_or_none(
                _first_attr(stats, "oldest_unforwarded_age_s", "backlog_age_s", "oldest_age_s")
            )
            forwarded = _int_or_none(_first_attr(stats, "forwarded_rows", "forwarded"))
            dropped = _int_or_none(_first_attr(stats, "dropped_rows", "dropped"))
            quarantined = _int_or_none(_first_attr(stats, "quarantined_batches", "quarantined"))
            state = _first_attr(stats, "state")
            state = None if state is None else str(state)
            error = _first_attr(stats, "last_error")
            error = None if error is None else str(error)
        influx: InfluxConfig = self.settings.storage.influx
        return StorageStatus(
            journal_open=self.journal is not None and not self.stopping,
            backlog_rows=backlog,
            oldest_unforwarded_age_s=age,
            forwarded_rows=forwarded,
            dropped_rows=dropped,
            quarantined_batches=quarantined,
            forwarder_state=state,
            forwarder_error=error,
            influx_configured=influx.enabled,
            influx_reachable=self.influx_reachable if influx.enabled else None,
        )

    def readiness(self) -> tuple[bool, list[str]]:
        """Whether the service can do its job, and why not.

        A monitor that is unplugged does not make the service unready (that
        would get it restarted for nothing); missing storage does.
        """
        reasons: list[str] = []
        if not self.started:
            reasons.append("service not started")
        if self.stopping:
            reasons.append("service stopping")
        if self.journal is None and self.history is None:
            reasons.append("no storage")
        if self.journal is None and self.influx_reachable is False:
            reasons.append("InfluxDB (the only storage of this replica) is unreachable")
        st = self.storage_status()
        if st.forwarder_state == "auth_failed":
            reasons.append(f"InfluxDB refuses the credentials: {st.forwarder_error}")
        return (not reasons, reasons)


def _safe_attr(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    try:
        return getattr(obj, name, None)
    except Exception:
        log.exception("reading %s failed", name)
        return None


def _first_attr(obj: Any, *names: str) -> Any:
    for n in names:
        if isinstance(obj, Mapping) and n in obj:
            return obj[n]
        if hasattr(obj, n):
            return getattr(obj, n)
    return None


def _int_or_none(v: Any) -> int | None:
    return None if v is None else int(v)


def _float_or_none(v: Any) -> float | None:
    return None if v is None else float(v)


# --- assembling the real components ----------------------------------------------------


def open_storage(storage: StorageConfig, *, forward: bool = True) -> tuple[Store | None, Any, Any]:
    """Journal (+ forwarder when InfluxDB is configured) and the history store to query.

    ``forward=False`` is a replica: with InfluxDB it reads only from there; without,
    it reads the journal in ``data_dir`` (an agent's, on the same machine).

    History comes from InfluxDB when it is configured (it has everything every
    agent forwarded), else from the local journal.
    """
    from odpm.storage.history import InfluxHistory, JournalHistory
    from odpm.storage.influx import Forwarder
    from odpm.storage.journal import Journal

    influx = storage.influx
    if not forward and influx.enabled:
        # A replica: InfluxDB holds what every agent forwarded; no journal of its own.
        return None, None, InfluxHistory(influx)
    # from_config sets forwarding from whether InfluxDB is configured; a
    # journal-only replica never appends, so that flag does not matter to it.
    journal = Journal.from_config(storage)
    forwarder: Forwarder | None = None
    history: Any
    try:
        if influx.enabled:
            if forward:
                forwarder = Forwarder(journal, influx)
            history = InfluxHistory(influx)
        else:
            history = JournalHistory(journal)
    except BaseException:
        journal.close()
        raise
    return journal, forwarder, history


def start_simulators(
    count: int, *, taken: set[str], options: Mapping[str, Any] | None = None
) -> tuple[list[SimulatorServer], list[DeviceConfig]]:
    """Serve ``count`` simulated ODPM-96s on loopback TCP ports; their device configs."""
    from drivers.simulator.device import SimulatedOdpm96
    from drivers.simulator.server import SimulatorServer

    if count < 0:
        raise ValueError(f"--simulate must be 0 or more, got {count}")
    servers: list[SimulatorServer] = []
    devices: list[DeviceConfig] = []
    try:
        for i in range(1, count + 1):
            dev_id = f"sim{i}"
            if dev_id in taken:
                raise ValueError(f"device id {dev_id!r} from --simulate is already configured")
            device = SimulatedOdpm96(seed=i, serial_number=f"SIM{i:05d}")
            server = SimulatorServer.start_tcp("127.0.0.1", 0, device=device)
            servers.append(server)
            devices.append(
                DeviceConfig.model_validate(
                    {**(options or {}), "id": dev_id, "address": server.address}
                )
            )
    except BaseException:
        for s in servers:
            with contextlib.suppress(Exception):
                s.close()
        raise
    return servers, devices


def utc_now() -> datetime:
    return datetime.now(UTC)
