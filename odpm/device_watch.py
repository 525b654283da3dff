"""The watchdog that raises ``device_lost``: a monitor that delivers no scan.

A monitor that cannot be reached never produces a reading, so no check inside the
pipeline can notice it; this thread looks at every acquiring device's time since
its last scan and raises the device-wide ``device_lost`` alarm once that exceeds
the limit.  The next reading the device's pipeline evaluates clears it (see
:meth:`odpm.alarms.AlarmEngine.device_lost`), so "scans resume" and "the alarm
clears" are the same event, stored with that scan.

The limit is ``alarms.device_lost_s``, or twice the device's ``interval_s`` when
that is longer (a device polled every minute is not lost after 30 s of silence).
A paused device (``running: false``) is not watched: its silence is deliberate,
and its clock starts afresh when it resumes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from odpm.models import AlarmEvent

if TYPE_CHECKING:
    from odpm.service import DeviceRuntime

log = logging.getLogger(__name__)

#: How often the watchdog looks, at most (it looks more often for short limits).
MAX_CHECK_PERIOD_S = 1.0


def device_lost_limit_s(device_lost_s: float, interval_s: float) -> float:
    """Silence after which a device counts as lost (see the module docstring)."""
    return max(device_lost_s, 2.0 * interval_s)


class DeviceWatch:
    """One thread checking every device; ``raise_event`` stores and publishes an event.

    ``devices`` returns the current devices (the service replaces its map, never
    mutates it); ``limit_s`` returns ``alarms.device_lost_s`` now (None: off).
    """

    def __init__(
        self,
        devices: Callable[[], list[DeviceRuntime]],
        limit_s: Callable[[], float | None],
        raise_event: Callable[[DeviceRuntime, AlarmEvent], None],
    ) -> None:
        self._devices = devices
        self._limit_s = limit_s
        self._raise = raise_event
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="odpm-device-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            limit = self._limit_s()
            period = MAX_CHECK_PERIOD_S if limit is None else min(MAX_CHECK_PERIOD_S, limit / 4)
            if self._stop.wait(period):
                return
            try:
                self.check(time.monotonic())
            except Exception:  # the watchdog must outlive a bug in one check
                log.exception("device watchdog check failed")

    def check(self, now_mono: float) -> None:
        """Raise ``device_lost`` for every device silent past its limit (idempotent)."""
        base = self._limit_s()
        for dev in self._devices():
            if dev.pipeline is None or dev.worker is None:
                continue
            if not dev.running or dev.worker.state in ("paused", "stopped"):
                dev.last_scan_mono = now_mono  # deliberate silence; restart the clock
                continue
            if base is None:
                continue
            limit = device_lost_limit_s(base, dev.interval_s)
            silent_s = now_mono - dev.last_scan_mono
            if silent_s < limit:
                continue
            event = dev.pipeline.device_lost(dev.id, datetime.now(UTC), silent_s, limit)
            if event is not None:
                log.warning(
                    "%s: no scan for %.1f s (limit %.1f s): device_lost raised (%s)",
                    dev.id,
                    silent_s,
                    limit,
                    dev.worker.last_error or "no error reported",
                )
                self._raise(dev, event)
