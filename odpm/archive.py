"""Which spectra are kept: the ``[archive]`` policy applied to every trace scan.

Most traces are thrown away; a trace is kept (written to the archive, see
:mod:`odpm.storage.traces`) when:

* ``every_s`` > 0 and it is the first trace of its wall-clock bucket of
  ``every_s`` seconds (``periodic``): one a minute by default, however fast the
  device scans, so the count over a period is the period over ``every_s``;
* ``on_alarm`` and its reading raised an alarm (``alarm:<kind>:<channel>``): the
  traces of the last ``pre_s`` seconds, held in an in-memory ring, are kept with
  it, and so is every trace of the next ``post_s`` seconds, whatever ``every_s``
  says, so the spectrum before and after the event can be looked at later;
* ``on_demand`` and it was taken by ``POST .../scan`` (``manual``).

The ring holds only traces not kept yet, at most :data:`MAX_RING` of them, each
axis once, so it costs ``pre_s`` seconds of levels per device in memory (10 traces
of 3,881 float32 points: 155 kB).  :class:`TracePolicy` is one device's state;
:class:`TraceKeeper` applies the policies of all devices and writes to the
archive; the service calls it on its scan path.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from odpm.config import ArchiveConfig, ArchivePolicy, DeviceConfig
from odpm.models import AlarmEvent, TraceScan
from odpm.storage.journal import time_to_us
from odpm.storage.traces import REASON_MANUAL, REASON_PERIODIC, TraceArchive, alarm_reason

if TYPE_CHECKING:
    from odpm.storage.journal import Journal

__all__ = ["MAX_RING", "Keep", "TraceKeeper", "TracePolicy"]

log = logging.getLogger(__name__)

#: Most traces held for the pre-alarm window per device (a device scanning back to
#: back fills ``pre_s`` with more traces than anyone needs).
MAX_RING = 600
#: Scans remembered for a later ``POST .../scan`` to find its scan id and trace.
_RECENT = 16


@dataclass(frozen=True, slots=True)
class Keep:
    """A trace to keep: the scan, the journal id of its reading, and why."""

    scan: TraceScan
    scan_id: int | None
    reason: str


@dataclass(slots=True)
class _Seen:
    """A recent scan, for a later ``POST .../scan`` to find its ids."""

    scan: TraceScan
    scan_id: int | None
    trace_id: int | None = None


class TracePolicy:
    """One device's archive decisions (see the module docstring).  Thread-safe."""

    def __init__(self, policy: ArchivePolicy) -> None:
        self._lock = threading.Lock()
        self._policy = policy
        self._ring: collections.deque[tuple[TraceScan, int | None]] = collections.deque(
            maxlen=MAX_RING
        )
        self._post_until_us: int | None = None
        self._post_reason = ""
        self._last_bucket: int | None = None
        self._axis: npt.NDArray[np.float64] | None = None
        #: The last few scans, with their scan ids and trace ids once kept.
        self._recent: collections.deque[_Seen] = collections.deque(maxlen=_RECENT)

    @property
    def policy(self) -> ArchivePolicy:
        return self._policy

    def set_policy(self, policy: ArchivePolicy) -> None:
        with self._lock:
            self._policy = policy

    def on_scan(
        self, scan: TraceScan, scan_id: int | None, alarms: Iterable[AlarmEvent]
    ) -> list[Keep]:
        """What to keep now that ``scan`` (whose reading raised ``alarms``) arrived."""
        now_us = time_to_us(scan.time)
        raised = [a for a in alarms if a.active]
        with self._lock:
            p = self._policy
            out: list[Keep] = []
            reason: str | None = None
            if raised and p.on_alarm:
                reason = alarm_reason(raised[0].kind.value, raised[0].channel)
                since_us = now_us - int(p.pre_s * 1e6)
                out += [
                    Keep(s, sid, reason) for s, sid in self._ring if time_to_us(s.time) >= since_us
                ]
                self._ring.clear()
                self._post_until_us = now_us + int(p.post_s * 1e6)
                self._post_reason = reason
            elif self._post_until_us is not None and now_us <= self._post_until_us:
                reason = self._post_reason
            bucket = now_us // max(1, int(p.every_s * 1e6)) if p.every_s > 0 else None
            if reason is None and bucket is not None and bucket != self._last_bucket:
                reason = REASON_PERIODIC
            if reason is not None:
                out.append(Keep(scan, scan_id, reason))
                if bucket is not None:
                    self._last_bucket = bucket
            elif p.on_alarm and p.pre_s > 0:
                self._ring.append((self._share_axis(scan), scan_id))
                since_us = now_us - int(p.pre_s * 1e6)
                while self._ring and time_to_us(self._ring[0][0].time) < since_us:
                    self._ring.popleft()
            self._recent.append(_Seen(scan, scan_id))
            return out

    def _share_axis(self, scan: TraceScan) -> TraceScan:
        """The scan with the ring's axis array when it is the same axis (drivers build a
        new one per scan): the ring then holds each axis once, not once per trace."""
        last = self._axis
        f = scan.frequency_thz
        if last is not None and last is not f and last.shape == f.shape and np.array_equal(last, f):
            return dataclasses.replace(scan, frequency_thz=last)
        self._axis = f
        return scan

    def kept(self, keep: Keep, trace_id: int) -> None:
        """Note that ``keep`` was stored as ``trace_id`` (for a later manual request); by
        scan id when it has one (the ring holds copies sharing one axis array)."""
        with self._lock:
            for seen in self._recent:
                same_id = keep.scan_id is not None and seen.scan_id == keep.scan_id
                if same_id or seen.scan is keep.scan:
                    seen.trace_id = trace_id

    def manual(self, scan: TraceScan) -> tuple[int | None, int | None] | None:
        """(scan id, trace id if already kept) of a recent scan, or None if unknown."""
        with self._lock:
            if not self._policy.on_demand:
                return None
            for seen in reversed(self._recent):
                if seen.scan is scan:
                    return seen.scan_id, seen.trace_id
        return None


class TraceKeeper:
    """The archive policies of all devices and the archive they write to."""

    def __init__(self, archive: TraceArchive, config: ArchiveConfig) -> None:
        self.archive = archive
        self.config = config
        self._policies: dict[str, TracePolicy] = {}
        self._lock = threading.Lock()

    def policy(self, device: DeviceConfig) -> TracePolicy:
        with self._lock:
            got = self._policies.get(device.id)
            if got is None:
                got = TracePolicy(self.config.policy_for(device.archive))
                self._policies[device.id] = got
            return got

    def on_scan(
        self,
        device: DeviceConfig,
        scan: TraceScan,
        scan_id: int | None,
        alarms: Iterable[AlarmEvent],
        identity: str | None,
    ) -> list[int]:
        """Apply the device's policy to a trace scan; store what it keeps; the new ids."""
        policy = self.policy(device)
        ids = []
        for keep in policy.on_scan(scan, scan_id, alarms):
            tid = self._store(device.id, keep, identity)
            policy.kept(keep, tid)
            ids.append(tid)
        return ids

    def keep_manual(
        self, device: DeviceConfig, scan: TraceScan, identity: str | None
    ) -> int | None:
        """Keep the trace of a ``POST .../scan`` (``manual``); its id, or None if the policy
        says no.  A trace the policy already kept is relabelled rather than stored twice."""
        policy = self.policy(device)
        got = policy.manual(scan)
        if got is None:
            return None
        scan_id, trace_id = got
        if trace_id is not None:
            self.archive.set_reason(trace_id, REASON_MANUAL)
            return trace_id
        keep = Keep(scan, scan_id, REASON_MANUAL)
        tid = self._store(device.id, keep, identity)
        policy.kept(keep, tid)
        return tid

    def _store(self, device_id: str, keep: Keep, identity: str | None) -> int:
        s = keep.scan
        return self.archive.store(
            device=device_id,
            time=s.time,
            frequency_thz=s.frequency_thz,
            power_dbm=s.power_dbm,
            rbw_ghz=s.rbw_ghz,
            reason=keep.reason,
            scan_id=keep.scan_id,
            identity=identity,
            temperature_c=s.temperature_c,
        )

    @classmethod
    def for_journal(cls, journal: Journal, config: ArchiveConfig) -> TraceKeeper:
        """The service's keeper: an archive in ``journal``'s file with ``config``'s retention.

        Traces share the journal's ``storage.max_bytes`` with the readings; they never
        take more than half of it, so the readings always have room.
        """
        archive = TraceArchive(
            journal,
            max_bytes=min(config.max_bytes, journal.max_bytes // 2),
            retention_days=config.retention_days,
        )
        return cls(archive, config)
