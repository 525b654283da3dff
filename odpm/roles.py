"""What a service does besides answering reads: acquire (the agent) or follow storage
(a replica).

A :class:`~odpm.service.Service` holds the read side every shape shares: the latest
reading per device, the active alarms, the history store, health.  How those get
filled differs, and used to sit side by side in the service as ``if acquisition``
branches; each way is now one small class here:

* :class:`AgentRole` (``odpm serve``, ``--no-api``): a pipeline and an acquisition
  worker per device, and the watchdog that raises ``device_lost``; readings reach the
  shared side through :meth:`Service.ingest`.
* :class:`ReplicaRole` (``--no-acquisition``): no pipeline, no worker; a thread
  re-reads the latest readings and active alarms from storage every
  :data:`REPLICA_REFRESH_S`, adding the devices it finds there.

The service calls :meth:`start` after it has filled its cache from storage, and
:meth:`stop` before it flushes and closes storage.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from typing import TYPE_CHECKING, Protocol

from pydantic import ValidationError

from odpm.config import DeviceConfig, redact_url
from odpm.device_watch import DeviceWatch

if TYPE_CHECKING:
    from odpm.pipeline import Pipeline
    from odpm.service import Service
    from odpm.storage.history import InfluxHistory

log = logging.getLogger(__name__)

#: How often a replica (no acquisition) re-reads the latest readings from storage.
REPLICA_REFRESH_S = 5.0
#: How long stopping waits for each acquisition worker (they stop in parallel).
WORKER_STOP_TIMEOUT_S = 3.0


class Role(Protocol):
    """The part of a service that is not the shared read side."""

    #: True when this role acquires and analyses (it has pipelines and workers).
    acquires: bool

    def pipeline_for(self, cfg: DeviceConfig) -> Pipeline | None: ...
    def before_refresh(self, influx: InfluxHistory | None) -> None: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...


class AgentRole:
    """Acquire: one pipeline and worker per device, and the ``device_lost`` watchdog."""

    acquires = True

    def __init__(self, service: Service) -> None:
        self._service = service
        self._device_watch: DeviceWatch | None = None

    def pipeline_for(self, cfg: DeviceConfig) -> Pipeline:
        from odpm.pipeline import Pipeline

        s = self._service
        return Pipeline(cfg.plan.to_plan(), s.settings.pipeline, s.alarm_config, cfg.calibration)

    def before_refresh(self, influx: InfluxHistory | None) -> None:
        """An agent knows its devices from its config: nothing to discover."""

    def start(self) -> None:
        from odpm.acquisition import AcquisitionWorker

        s = self._service
        for dev in s.devices.values():
            if dev.pipeline is not None:
                # What the last run left active, so its first readings can clear it.
                dev.pipeline.restore_alarms(s.active_alarms(dev.id))
        for dev in s.devices.values():
            dev.worker = AcquisitionWorker(dev.config, s.scan_handler(dev))
            dev.last_scan_mono = time.monotonic()
            if dev.config.enabled:
                dev.worker.start()
        self._device_watch = DeviceWatch(
            lambda: list(s.devices.values()),
            lambda: s.alarm_config.device_lost_s,
            s.raise_scanless_alarm,
        )
        self._device_watch.start()

    def stop(self) -> None:
        """Stop the watchdog, then every worker (closing its transport) in parallel, so
        shutdown takes one worker's stop time, not N."""
        if self._device_watch is not None:
            self._device_watch.stop()
        workers = [d.worker for d in self._service.devices.values() if d.worker is not None]
        if not workers:
            return
        with concurrent.futures.ThreadPoolExecutor(
            max_workers=min(32, len(workers)), thread_name_prefix="odpm-stop"
        ) as pool:
            for f in [pool.submit(w.stop, WORKER_STOP_TIMEOUT_S) for w in workers]:
                try:
                    f.result()
                except Exception:
                    log.exception("stopping a worker failed")


class ReplicaRole:
    """Follow storage: refresh the shared read side from it, adding the devices it holds."""

    acquires = False

    def __init__(self, service: Service, refresh_s: float = REPLICA_REFRESH_S) -> None:
        self._service = service
        self._refresh_s = refresh_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def pipeline_for(self, cfg: DeviceConfig) -> None:
        """A replica analyses nothing."""
        return None

    def before_refresh(self, influx: InfluxHistory | None) -> None:
        self._discover_devices(influx)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="odpm-replica-refresh", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self._refresh_s):
            self._service.refresh_latest_from_storage()

    def _discover_devices(self, influx: InfluxHistory | None) -> None:
        """Add the devices in storage that this replica does not know yet.

        They get the default device settings (and so the default channel plan);
        their address says where the replica reads them from.
        """
        from odpm.service import DeviceRuntime

        s = self._service
        try:
            if s.journal is not None:
                found, where = s.journal.devices(), f"journal:{s.journal.path}"
            elif influx is not None:
                found = influx.devices()
                where = f"influxdb:{redact_url(s.settings.storage.influx.url)}"
            else:
                return
        except Exception as exc:
            log.warning("could not list the devices in storage: %s", exc)
            return
        new: dict[str, DeviceRuntime] = {}
        for device_id in found:
            if device_id in s.devices:
                continue
            try:
                cfg = DeviceConfig(id=device_id, address=where)
            except ValidationError:
                log.warning("storage holds device %r, which is not a valid device id", device_id)
                continue
            new[device_id] = DeviceRuntime(cfg, None)
        if new:
            log.info("found in storage: %s", ", ".join(sorted(new)))
            s.devices = {**s.devices, **new}
