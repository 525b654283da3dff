"""The running service: one acquisition worker and pipeline per device, storage, live streams.

This module is the wiring of the real stages (``AcquisitionWorker``,
``Pipeline``, ``Journal``, ``Forwarder``, a history store); it runs in three
shapes from the same code:

* full (default): workers acquire, the pipeline analyses, the journal stores,
  the forwarder ships to InfluxDB, the API serves;
* agent (``odpm serve --no-api``): the same without HTTP;
* replica (``odpm serve --no-acquisition``): no workers; the API answers from
  storage, refreshing its latest-reading cache from it periodically and adding
  the devices it finds there (an InfluxDB replica needs no ``[[devices]]``).

The service is the read side every shape shares; what differs (workers and pipelines,
or a refresh from storage) is its :attr:`Service.role` (:mod:`odpm.roles`).

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
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from odpm.config import (
    AlarmConfig,
    DeviceConfig,
    InfluxConfig,
    Settings,
    StorageConfig,
    redact_url,
)
from odpm.grid import ChannelPlan
from odpm.instrument_analysis import STORE_FILE as INSTRUMENT_STORE_FILE
from odpm.instrument_analysis import InstrumentAnalysisStore
from odpm.live import Broadcaster
from odpm.models import AlarmEvent, InstrumentAnalysis, Mode, RawScan, Reading, TraceScan
from odpm.osnr_traces import CompanionTraces
from odpm.roles import AgentRole, ReplicaRole, Role
from odpm.summary import reading_summary

if TYPE_CHECKING:
    # Imported where used at run time: the CLI imports this module for every
    # subcommand, and drivers, pipeline and storage are not cheap to import.
    from drivers.simulator.server import SimulatorServer
    from odpm.acquisition import AcquisitionWorker, WorkerCounters
    from odpm.archive import TraceKeeper
    from odpm.health import Health
    from odpm.pipeline import Pipeline
    from odpm.storage.history import ChannelHistory, InfluxHistory, JournalHistory
    from odpm.storage.influx import Forwarder
    from odpm.storage.journal import Journal

    HistorySource = JournalHistory | InfluxHistory

log = logging.getLogger(__name__)

_T = TypeVar("_T")

#: Counters every worker reports (names as exported to Prometheus).
COUNTER_NAMES = ("scans", "errors", "reconnects", "crc_failures", "lost_frames")
#: How long ``stop`` lets the forwarder ship the journal's last rows.
FORWARDER_DRAIN_S = 4.0


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
    last_error_at: datetime | None = None


class _Encoded(Generic[_T]):
    """A value with its JSON encoding computed at most once, on first request.

    Readings arrive far more often than anyone asks for them (200 devices at
    1 Hz); encoding only what is read keeps ingest cheap and repeated reads free.
    """

    __slots__ = ("_encode", "_json", "value")

    def __init__(self, value: _T, encode: Callable[[_T], bytes]) -> None:
        self.value = value
        self._encode = encode
        self._json: bytes | None = None

    @property
    def json(self) -> bytes:
        if self._json is None:  # a race computes it twice, harmlessly
            self._json = self._encode(self.value)
        return self._json


def _counters_dict(counters: WorkerCounters | None) -> dict[str, int]:
    """The exported worker counters (a replica has none: zeros)."""
    if counters is None:
        return dict.fromkeys(COUNTER_NAMES, 0)
    return {k: int(getattr(counters, k)) for k in COUNTER_NAMES}


class DeviceRuntime:
    """One device: its config, worker, pipeline and latest cached data."""

    def __init__(self, config: DeviceConfig, pipeline: Pipeline | None) -> None:
        self.config = config
        self.plan: ChannelPlan = config.plan.to_plan()
        self.pipeline = pipeline
        self.worker: AcquisitionWorker | None = None
        #: Serialises pipeline + journal for this device (alarm state, row order).
        self.lock = threading.Lock()
        self.latest: _Encoded[Reading] | None = None
        self.trace: _Encoded[TraceScan] | None = None
        #: The last few (scan, reading) pairs, so POST /scan finds the reading of
        #: *its* scan even if a scheduled one has replaced ``latest`` since.
        self.recent: collections.deque[tuple[RawScan, _Encoded[Reading]]] = collections.deque(
            maxlen=16
        )
        # Requested settings, shown by the API (the worker owns the real ones).
        self.mode: Mode = config.mode
        self.interval_s = config.interval_s
        self.averaging = config.averaging
        self.running = config.enabled
        self.identity: str | None = None
        self.readings_stored = 0
        self.processing_errors = 0
        self.stored_time: datetime | None = None
        #: time.monotonic() of the last scan (or of start/resume): the device watchdog's clock.
        self.last_scan_mono = time.monotonic()
        #: Unix time acquisition was last resumed (health: silence counts from here).
        self.resumed_at: float | None = None
        #: Seconds between the last two stored readings (a long OSA sweep is not silence).
        self.scan_gap_s: float | None = None
        #: A bench OSA's own analysis of its latest sweep, with odpm's reading of it.
        self.instrument: tuple[datetime, InstrumentAnalysis, Reading | None] | None = None
        #: Reference / signal-off traces from ``[devices.osnr]`` (odpm.osnr_traces).
        self.companions = CompanionTraces(config.id, config.osnr)

    @property
    def id(self) -> str:
        return self.config.id

    def snapshot(self) -> DeviceSnapshot:
        w = self.worker
        if w is not None:
            state: str = w.state
            counters = _counters_dict(w.counters)
            last_error = w.last_error
            last_error_at = w.last_error_at
            last_scan = w.last_scan_time
            ident = w.identity
            if ident:
                self.identity = ident
        else:
            state = "replica"
            counters = _counters_dict(None)
            last_error = None
            last_error_at = None
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
            last_error_at=last_error_at,
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
        "mode": scan.mode,
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
    #: When the forwarder last quarantined a batch (health: "quarantining").
    last_quarantined: datetime | None = None


class Service:
    """The acquisition service: build with :meth:`from_settings`, then ``start``/``stop``.

    ``journal``, ``forwarder`` and ``history`` may be None (replicas on InfluxDB
    have no journal; journal-only setups have no forwarder).  With
    ``acquisition`` each device gets an ``AcquisitionWorker`` and a ``Pipeline``;
    without, the service is a replica reading storage.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        devices: Iterable[DeviceConfig] = (),
        journal: Journal | None = None,
        forwarder: Forwarder | None = None,
        history: HistorySource | None = None,
        acquisition: bool = True,
        broadcaster: Broadcaster | None = None,
        on_close: Iterable[Callable[[], None]] = (),
        traces: TraceKeeper | None = None,
    ) -> None:
        self.settings = settings
        #: The trace archive and its keeping policy (None without a journal).
        self.traces = traces
        #: ``deviation`` alarm state per device, with its reference loaded (lazily).
        self._deviation: dict[str, Any] = {}
        self.alarm_config: AlarmConfig = settings.alarms
        self.journal = journal
        self.forwarder = forwarder
        self.history = history
        self.acquisition = acquisition
        #: What this service does besides serving reads (odpm.roles).
        self.role: Role = AgentRole(self) if acquisition else ReplicaRole(self)
        self.broadcaster = broadcaster or Broadcaster()
        self._on_close = list(on_close)
        self._lock = threading.Lock()
        #: Active alarms keyed by (device, kind, channel); the last raising event.
        self._active_alarms: dict[tuple[str, str, int | None], AlarmEvent] = {}
        #: Replaced, never mutated, once started (a replica adds the devices it
        #: discovers), so readers on other threads can iterate it without a lock.
        self.devices: dict[str, DeviceRuntime] = {
            cfg.id: DeviceRuntime(cfg, self.role.pipeline_for(cfg)) for cfg in devices
        }
        self.started = False
        self.stopping = False
        self.started_at: float | None = None
        self.influx_reachable: bool | None = None
        #: Opened on first use (only devices with ``instrument_analysis`` need it).
        self.instrument_store: InstrumentAnalysisStore | None = None

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
        closers: list[Callable[[], None]] = []
        devices = list(settings.devices)
        if simulate and acquisition:
            sims, sim_devices = start_simulators(
                simulate, taken={d.id for d in devices}, options=simulate_options
            )
            closers.extend(s.close for s in sims)
            devices.extend(sim_devices)
        try:
            journal, forwarder, history = open_storage(settings.storage, forward=acquisition)
            from odpm.archive import TraceKeeper

            traces = (
                TraceKeeper.for_journal(journal, settings.archive) if journal is not None else None
            )
            return cls(
                settings,
                devices=devices,
                journal=journal,
                forwarder=forwarder,
                history=history,
                acquisition=acquisition,
                broadcaster=broadcaster,
                on_close=closers,
                traces=traces,
            )
        except BaseException:
            for close in closers:
                with contextlib.suppress(Exception):
                    close()
            raise

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Rebuild the latest cache from storage, then start the forwarder and the role
        (an agent's workers, a replica's refresh)."""
        if self.started:
            return
        self.refresh_latest_from_storage()
        if self.forwarder is not None:
            self.forwarder.start()
        self.role.start()
        self.started = True
        self.started_at = time.monotonic()
        log.info(
            "service started: %d device(s), acquisition %s, journal %s, influxdb %s",
            len(self.devices),
            "on" if self.acquisition else "off",
            "on" if self.journal is not None else "off",
            redact_url(self.settings.storage.influx.url) or "off",
        )

    def stop(self) -> None:
        """Stop the role (an agent's workers close their transports), then flush the
        forwarder and close the journal."""
        self.stopping = True
        self.role.stop()
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
                # The forwarder's own state says whether InfluxDB takes writes now; the
                # /health ping (2 s timeout) can miss a slow but working server.
                if self.forwarder.stats.state not in ("backoff", "auth_failed", "paused"):
                    self.forwarder.wait_drained(FORWARDER_DRAIN_S)
                self.forwarder.stop()
            except Exception:
                log.exception("stopping the forwarder failed")
        if self.journal is not None:
            try:
                self.journal.close()
            except Exception:
                log.exception("closing the journal failed")
        if self.instrument_store is not None:
            with contextlib.suppress(Exception):
                self.instrument_store.close()
        if self.history is not None:
            from odpm.storage.history import InfluxHistory

            if isinstance(self.history, InfluxHistory):  # the journal's closed above
                with contextlib.suppress(Exception):
                    self.history.close()
        self.started = False
        log.info("service stopped")

    # -- the scan path ------------------------------------------------------------------

    def scan_handler(self, dev: DeviceRuntime) -> Callable[[RawScan], None]:
        """What ``dev``'s acquisition worker calls with each scan (:meth:`ingest`)."""

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
        dev.last_scan_mono = time.monotonic()
        if isinstance(scan, TraceScan) and dev.companions.configured:
            scan = self._with_companions(dev, scan)
        with dev.lock:
            try:
                reading = dev.pipeline.process(scan)
            except Exception:
                dev.processing_errors += 1
                log.exception("%s: analysing a %s scan failed", dev.id, scan.mode)
                return None
            if self.traces is not None and (
                self.alarm_config.deviation_db is not None or dev.id in self._deviation
            ):
                reading = self._check_deviation(dev, reading)
            scan_id = None
            if self.journal is not None:
                try:
                    scan_id = self.journal.append(reading)
                except Exception as exc:
                    dev.processing_errors += 1
                    if not isinstance(exc, sqlite3.Error):
                        log.exception("%s: storing a reading failed", dev.id)
                    # else: the journal counted it and logs once per fault state
                    return None
            dev.readings_stored += 1
            if dev.latest is not None:  # health: how long this device's scans really take
                dev.scan_gap_s = (reading.time - dev.latest.value.time).total_seconds()
            dev.latest = _Encoded(reading, encode_reading)
            dev.recent.append((scan, dev.latest))
            if isinstance(scan, TraceScan):
                dev.trace = _Encoded(scan, encode_trace)
                if scan.instrument is not None:
                    self._keep_instrument_analysis(dev, scan, reading)
        if reading.alarms:
            self._note_alarms(reading.alarms)
        if self.traces is not None and isinstance(scan, TraceScan):
            self._keep_traces(dev, scan, scan_id, reading)
        self._publish(dev.id, reading)
        return reading

    def _check_deviation(self, dev: DeviceRuntime, reading: Reading) -> Reading:
        """The ``deviation`` alarm against the device's default reference (odpm.alarms)."""
        from odpm.alarms import DeviationAlarm

        try:
            check = self._deviation.get(dev.id)
            if check is None:
                check = DeviationAlarm(dev.plan)
                check.set_reference(self._reference_power(dev))
                self._deviation[dev.id] = check
            events = check.evaluate(dev.id, reading.time, reading.power_dbm, self.alarm_config)
        except Exception:
            log.exception("%s: checking the deviation from the reference failed", dev.id)
            return reading
        return dataclasses.replace(reading, alarms=reading.alarms + events) if events else reading

    def _reference_power(self, dev: DeviceRuntime) -> Any:
        """Channel powers of the device's default reference trace (None if it has none)."""
        assert self.traces is not None
        name = self.traces.policy(dev.config).policy.reference
        ref = self.traces.archive.reference(dev.id, name) if name else None
        if ref is None:
            return None
        from odpm.compare import analyse_spectrum

        return analyse_spectrum(
            dev.plan,
            self.settings.pipeline,
            ref.frequency_thz,
            ref.power_dbm,
            ref.rbw_ghz,
            calibration=dev.config.calibration,
        ).power_dbm

    def _with_companions(self, dev: DeviceRuntime, scan: TraceScan) -> TraceScan:
        """The scan with the device's configured reference / signal-off traces on its
        axis (those that fit; ``dev.companions.problem`` says why another does not)."""
        archive = self.traces.archive if self.traces is not None else None
        try:
            got = dev.companions.for_axis(scan.frequency_thz, scan.rbw_ghz, archive)
        except Exception:
            log.exception("%s: loading the OSNR reference / signal-off traces failed", dev.id)
            return scan
        reference, noise = got.get("reference"), got.get("noise_trace")
        if reference is None and noise is None:
            return scan
        return dataclasses.replace(
            scan,
            reference_power_dbm=scan.reference_power_dbm
            if scan.reference_power_dbm is not None
            else reference,
            noise_power_dbm=scan.noise_power_dbm if scan.noise_power_dbm is not None else noise,
        )

    def reference_changed(self, device_id: str) -> None:
        """A reference or the default name changed: reload it for the ``deviation`` alarm,
        and the device's OSNR reference / signal-off traces (they may name it)."""
        dev = self.device(device_id)
        dev.companions.reload()
        check = self._deviation.get(device_id)
        if check is not None and self.traces is not None:
            check.set_reference(self._reference_power(dev))

    def _keep_traces(
        self, dev: DeviceRuntime, scan: TraceScan, scan_id: int | None, reading: Reading
    ) -> None:
        """The archive policy (``odpm.archive``) on this trace; never fails the scan path."""
        assert self.traces is not None
        try:
            identity = dev.worker.identity if dev.worker is not None else dev.identity
            self.traces.on_scan(dev.config, scan, scan_id, reading.alarms, identity)
        except Exception:
            log.exception("%s: keeping a trace in the archive failed", dev.id)

    def _keep_instrument_analysis(
        self, dev: DeviceRuntime, scan: TraceScan, reading: Reading
    ) -> None:
        """The instrument's own analysis beside odpm's (odpm/instrument_analysis.py)."""
        assert scan.instrument is not None
        dev.instrument = (scan.time, scan.instrument, reading)
        if self.journal is None:
            return
        try:
            store = self._instrument_store(create=True)
            assert store is not None
            store.put(dev.id, scan.time, scan.instrument)
        except Exception:
            dev.processing_errors += 1
            log.exception("%s: storing the instrument's analysis failed", dev.id)

    def instrument_analysis(
        self, device_id: str
    ) -> tuple[datetime, InstrumentAnalysis, Reading | None] | None:
        """The latest instrument analysis of a device (memory, else the store on disk)."""
        dev = self.device(device_id)
        if dev.instrument is not None:
            return dev.instrument
        store = self._instrument_store(create=False)
        stored = store.get(device_id) if store is not None else None
        if stored is None:
            return None
        latest = dev.latest.value if dev.latest is not None else None
        return stored[0], stored[1], latest

    def _instrument_store(self, *, create: bool) -> InstrumentAnalysisStore | None:
        """The store beside the journal; None without a journal (or a file, unless ``create``)."""
        if self.journal is None:
            return None
        with self._lock:
            if self.instrument_store is None:
                path = self.journal.path.parent / INSTRUMENT_STORE_FILE
                if not create and not path.exists():
                    return None
                self.instrument_store = InstrumentAnalysisStore(path)
            return self.instrument_store

    def _publish(self, device_id: str, reading: Reading) -> None:
        try:
            self.broadcaster.publish(device_id, "reading", reading.to_dict)
            # The all-devices stream carries summaries (see odpm.summary).
            self.broadcaster.publish(device_id, "summary", lambda: reading_summary(reading))
            for event in reading.alarms:
                self.broadcaster.publish(device_id, "alarm", event.to_dict)
        except Exception:
            log.exception("%s: publishing a reading to live streams failed", device_id)

    def raise_scanless_alarm(self, dev: DeviceRuntime, event: AlarmEvent) -> None:
        """Store (committed), note and publish an event no scan carries (``device_lost``).

        Under the device's lock, so it is ordered with the readings in the journal.
        """
        with dev.lock:
            if self.journal is not None:
                try:
                    self.journal.append_alarms([event])
                except Exception:
                    log.exception("%s: storing a %s alarm failed", dev.id, event.kind.value)
        self._note_alarms([event])
        try:
            self.broadcaster.publish(dev.id, "alarm", event.to_dict)
        except Exception:
            log.exception("%s: publishing an alarm to live streams failed", dev.id)

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
        """Raise/clear events, newest first: from the journal when there is one (this
        machine's newest), else from InfluxDB (a replica: every agent's events).

        Blocking; on a replica it raises ``HistoryBackendError`` if InfluxDB cannot answer.
        """
        from odpm.storage.history import InfluxHistory

        if self.journal is not None:
            events = list(self.journal.alarm_events(device=device_id, limit=limit))
        elif isinstance(self.history, InfluxHistory):
            events = self.history.alarm_events(device=device_id, limit=limit)
        else:
            return []
        events.sort(key=lambda e: e.time, reverse=True)
        return events[:limit]

    def refresh_latest_from_storage(self) -> None:
        """Fill the latest cache from storage (start-up, and replicas periodically).

        The journal answers when there is one (it is this machine's newest data);
        a replica without one asks InfluxDB.  A replica also adds the devices
        storage knows and its config does not.

        Active alarms are rebuilt the same way: the newest event of every
        (device, channel, kind) in the journal or, on an InfluxDB replica, the
        newest ``alarm`` point of every such series (so the map follows the agents within one
        refresh period).  When storage cannot answer, the map is left as it was.
        """
        from odpm.storage.history import InfluxHistory

        influx = self.history if isinstance(self.history, InfluxHistory) else None
        if self.journal is None and influx is None:
            return
        self.role.before_refresh(influx)
        for dev in self.devices.values():
            try:
                if self.journal is not None:
                    reading = self.journal.latest(dev.id)
                else:
                    assert influx is not None
                    reading = influx.latest(dev.id, dev.plan)
            except Exception as exc:
                log.warning("%s: could not read the latest reading from storage: %s", dev.id, exc)
                continue
            if reading is None:
                continue
            with dev.lock:
                if dev.latest is None or dev.latest.value.time < reading.time:
                    dev.latest = _Encoded(reading, encode_reading)
        if self.journal is not None:
            try:
                active_now = self.journal.active_alarms()
            except Exception as exc:
                log.warning("could not read the active alarms from the journal: %s", exc)
                return
            with self._lock:
                self._active_alarms = {
                    (e.device_id, e.kind.value, e.channel): e for e in active_now
                }
        elif influx is not None:
            try:
                active = influx.active_alarms()
            except Exception as exc:
                log.warning("could not read the active alarms from InfluxDB: %s", exc)
                return
            rebuilt = {(e.device_id, e.kind.value, e.channel): e for e in active}
            with self._lock:
                self._active_alarms = rebuilt

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

    # -- control ------------------------------------------------------------------------

    def set_thresholds(self, alarms: AlarmConfig) -> AlarmConfig:
        """Apply new alarm thresholds to every device's pipeline (next scan on).

        Channel numbers are checked against every device's plan first, so a
        refused change leaves every device on the old thresholds.  A replica
        refuses: alarms are raised by the agents' pipelines, which it cannot reach,
        and accepting would tell the caller something changed when nothing did.
        """
        if not self.acquisition:
            raise NotAvailableError(
                "this replica runs no pipeline (--no-acquisition): thresholds are set on the "
                "agents that acquire (their config, or PUT /api/v1/thresholds on their API)"
            )
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
            if running and not dev.running:
                dev.resumed_at = time.time()
            dev.running = running
        return dev.snapshot()

    def request_scan(self, device_id: str, mode: Mode | None) -> concurrent.futures.Future[RawScan]:
        dev = self.device(device_id)
        if dev.worker is None:
            raise NotAvailableError("this service runs without acquisition (--no-acquisition)")
        return dev.worker.request_scan(mode)

    def keep_manual_trace(self, device_id: str, scan: RawScan) -> int | None:
        """Keep the trace of a requested scan in the archive (``manual``); blocking."""
        dev = self.device(device_id)
        if self.traces is None or not isinstance(scan, TraceScan):
            return None
        identity = dev.worker.identity if dev.worker is not None else dev.identity
        try:
            return self.traces.keep_manual(dev.config, scan, identity)
        except Exception:
            log.exception("%s: keeping a requested trace in the archive failed", dev.id)
            return None

    def reading_of(self, device_id: str, scan: RawScan) -> _Encoded[Reading] | None:
        """The stored reading made from ``scan`` (None if it could not be analysed/stored)."""
        dev = self.device(device_id)
        with dev.lock:
            for got_scan, encoded in reversed(dev.recent):
                if got_scan is scan:
                    return encoded
        return None

    def request_reading(
        self, device_id: str, mode: Mode | None
    ) -> concurrent.futures.Future[tuple[RawScan, _Encoded[Reading] | None]]:
        """:meth:`request_scan`, resolved with the scan and its stored reading (None if it
        could not be analysed or stored).

        The reading is looked up when the worker completes the request, on the
        worker's thread (it has ingested the scan and takes no other until the
        callback returns); looking it up later, after an event loop delay, could find
        it already pushed out of ``recent`` by back-to-back scans.
        """
        scanned = self.request_scan(device_id, mode)
        out: concurrent.futures.Future[tuple[RawScan, _Encoded[Reading] | None]] = (
            concurrent.futures.Future()
        )

        def done(f: concurrent.futures.Future[RawScan]) -> None:
            if f.cancelled():
                out.cancel()
            elif (exc := f.exception()) is not None:
                out.set_exception(exc)
            elif out.set_running_or_notify_cancel():
                scan = f.result()
                out.set_result((scan, self.reading_of(device_id, scan)))

        scanned.add_done_callback(done)
        out.add_done_callback(lambda f: scanned.cancel() if f.cancelled() else None)
        return out

    # -- health ---------------------------------------------------------------------------

    def storage_status(self) -> StorageStatus:
        influx: InfluxConfig = self.settings.storage.influx
        status = StorageStatus(
            journal_open=self.journal is not None and not self.stopping,
            backlog_rows=None,
            oldest_unforwarded_age_s=None,
            forwarded_rows=None,
            dropped_rows=None,
            quarantined_batches=None,
            forwarder_state=None,
            forwarder_error=None,
            influx_configured=influx.enabled,
            influx_reachable=self.influx_reachable if influx.enabled else None,
        )
        try:
            # Both read the journal, which may be closing under a late scrape.
            if self.journal is not None:
                status = dataclasses.replace(
                    status, dropped_rows=self.journal.stats().dropped_unforwarded
                )
            if self.forwarder is not None:
                st = self.forwarder.stats
                status = dataclasses.replace(
                    status,
                    backlog_rows=st.backlog_rows,
                    oldest_unforwarded_age_s=st.oldest_unforwarded_age_s,
                    forwarded_rows=st.forwarded_rows,
                    quarantined_batches=st.quarantined_batches,
                    forwarder_state=st.state,
                    forwarder_error=st.last_error,
                    last_quarantined=st.last_quarantined,
                )
        except Exception as exc:
            log.warning("could not read the storage status: %s", exc)
        return status

    def health(self) -> Health:
        """``ok`` / ``degraded`` / ``down`` with reasons (see :mod:`odpm.health`)."""
        from odpm.health import assess

        return assess(self)

    def readiness(self) -> tuple[bool, list[str]]:
        """Whether the service can do its job (not ``down``), and every reason it is not ok.

        A monitor that is unplugged does not make the service unready (that
        would get it restarted for nothing), it makes it degraded; missing
        storage makes it unready.
        """
        h = self.health()
        return h.ready, h.reasons


# --- assembling the real components ----------------------------------------------------


def open_storage(
    storage: StorageConfig, *, forward: bool = True
) -> tuple[Journal | None, Forwarder | None, HistorySource]:
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
    # The writing service holds the data dir (one per dir) and checks the journal
    # (moving a damaged one aside); a replica only reads another's journal.
    journal = Journal.from_config(storage, lock=forward, check=forward)
    forwarder: Forwarder | None = None
    history: HistorySource
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
