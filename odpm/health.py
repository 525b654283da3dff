"""What ``/api/v1/health`` says: ``ok``, ``degraded`` or ``down``, with the reasons.

One function, :func:`assess`, builds the whole answer from the service's
in-memory state and the journal's cheap counters (it never waits on a device or
on InfluxDB), so every caller (the health route, a key-less status-only variant
of it, tests) tells the same story.

* ``down``: the service cannot store at all (not started or stopping, no
  storage, a replica whose only storage, InfluxDB, is unreachable).  The HTTP
  answer is 503: a readiness probe takes the instance out of service.
* ``degraded``: it runs, but something needs a person: the journal cannot be
  written (disk full, read-only, damaged) and readings are being dropped; a
  damaged journal was moved aside at start; forwarding is paused (credentials,
  a database that is missing and cannot be created) or quarantining batches;
  the oldest unforwarded reading is older than ``storage.influx.max_lag_s``; an
  enabled device has delivered no scan for 3 of its intervals (the configured
  one, or the observed time between its scans if longer; at least
  :data:`MIN_STALE_S`), or its ``device_lost`` alarm is active (after
  ``alarms.device_lost_s``).  Still 200: restarting or unrouting the service would
  not fix any of these, and acquisition into the journal goes on.
* ``ok``: none of the above.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from odpm.models import AlarmKind

if TYPE_CHECKING:
    from odpm.service import DeviceRuntime, Service

HealthStatus = Literal["ok", "degraded", "down"]

#: A device is stale after this many intervals without a scan...
STALE_INTERVALS = 3
#: ...but never sooner than this (a 1 s device is not "lost" after 3 s of jitter).
MIN_STALE_S = 30.0
#: How long a quarantined batch keeps health "degraded" (the forwarder is "quarantining").
QUARANTINE_RECENT_S = 600.0


@dataclass(frozen=True, slots=True)
class Health:
    status: HealthStatus
    reasons: list[str]

    @property
    def ready(self) -> bool:
        """Readiness: ``ok`` and ``degraded`` can serve; ``down`` cannot."""
        return self.status != "down"


def stale_after_s(dev: DeviceRuntime) -> float:
    """Seconds without a scan after which an enabled device counts as silent.

    The interval is the configured one, or the time the device's scans really
    take when longer (a bench OSA sweep at high sensitivity can take minutes).
    """
    period = 1.0 / dev.config.stream_rate_hz if dev.mode == "stream" else dev.interval_s
    period = max(period, dev.scan_gap_s or 0.0)
    return max(MIN_STALE_S, STALE_INTERVALS * period)


def _silent_devices(service: Service, now: float) -> list[str]:
    """ "device X delivered no scan for N s" for every enabled, acquiring device that is silent."""
    if not service.acquisition or service.started_at is None:
        return []
    started_wall = now - (time.monotonic() - service.started_at)
    out = []
    for dev in list(service.devices.values()):
        if dev.worker is None or not dev.running:
            continue
        snap = dev.snapshot()
        since = max(started_wall, dev.resumed_at or 0.0)
        if snap.last_scan_time is not None:
            since = max(since, snap.last_scan_time.timestamp())
        silent_s = now - since
        if silent_s > stale_after_s(dev):
            why = f": {snap.last_error}" if snap.last_error else ""
            out.append(
                f"device {dev.id} delivered no scan for {silent_s:.0f} s ({snap.state}{why})"
            )
    return out


def _companion_problems(service: Service) -> list[str]:
    """A reason per device whose configured reference / signal-off trace is not in use."""
    out = []
    for dev in list(service.devices.values()):
        problem = dev.companions.problem
        if problem:
            out.append(f"device {dev.id}: {problem}: not used for OSNR")
    return out


def _lost_devices(service: Service, silent: list[str]) -> list[str]:
    """A reason per device whose ``device_lost`` alarm is active (``alarms.device_lost_s``
    may be shorter than :func:`stale_after_s`), unless already reported as silent."""
    out = []
    for event in service.active_alarms():
        if event.kind is not AlarmKind.DEVICE_LOST or event.device_id not in service.devices:
            continue
        if not any(r.startswith(f"device {event.device_id} ") for r in silent):
            out.append(
                f"device {event.device_id} lost: no scan for more than "
                f"{event.threshold or 0:g} s (device_lost alarm since "
                f"{event.time.strftime('%H:%M:%S')} UTC)"
            )
    return out


def assess(service: Service) -> Health:
    """The service's health now (see the module docstring)."""
    down: list[str] = []
    degraded: list[str] = []
    if not service.started:
        down.append("service not started")
    if service.stopping:
        down.append("service stopping")
    if service.journal is None and service.history is None:
        down.append("no storage")
    if service.journal is None and service.influx_reachable is False:
        down.append("InfluxDB (the only storage of this replica) is unreachable")

    journal = service.journal
    if journal is not None:
        fault = journal.faults.current
        if fault is not None:
            degraded.append(
                f"{fault.describe()}; {fault.dropped} reading(s) dropped since "
                f"{time.strftime('%H:%M:%S', time.gmtime(fault.since))} UTC"
            )
        if journal.moved_aside is not None:
            degraded.append(
                f"the journal was damaged at start: moved aside to {journal.moved_aside.name} "
                "(its rows are not forwarded), a new journal was started"
            )
    st = service.storage_status()
    if st.forwarder_state in ("auth_failed", "paused"):
        degraded.append(f"forwarding to InfluxDB is paused: {st.forwarder_error}")
    max_lag_s = service.settings.storage.influx.max_lag_s
    age = st.oldest_unforwarded_age_s
    if service.forwarder is not None and age is not None and age > max_lag_s:
        cause = f"; forwarder {st.forwarder_state}" + (
            f": {st.forwarder_error}" if st.forwarder_error else ""
        )
        degraded.append(
            f"the oldest reading not yet in InfluxDB is {age:.0f} s old "
            f"(storage.influx.max_lag_s = {max_lag_s:g}){cause}"
        )
    now = time.time()
    last_q = st.last_quarantined
    if last_q is not None and now - last_q.timestamp() < QUARANTINE_RECENT_S:
        degraded.append(
            f"InfluxDB rejected a batch {now - last_q.timestamp():.0f} s ago (quarantined; "
            "see odpm storage status / GET /api/v1/storage, then requeue)"
        )
    silent = _silent_devices(service, now)
    degraded.extend(silent)
    degraded.extend(_lost_devices(service, silent))
    degraded.extend(_companion_problems(service))
    if down:
        return Health("down", down + degraded)
    return Health("degraded" if degraded else "ok", degraded)
