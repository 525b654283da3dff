"""Prometheus metrics of one service instance.

Device and storage figures are *read* at scrape time from the snapshots the
workers and the forwarder already keep (a custom collector), rather than
counted a second time on the scan path: acquisition pays nothing for being
observed, and the exported numbers cannot drift from what /api/v1/devices shows.
Only HTTP request latency is recorded as it happens.

Each service owns its :class:`~prometheus_client.CollectorRegistry`, so two
services in one process (tests, benchmarks) never share or clash on state.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from odpm.service import Service

#: Worker counter -> (metric name without _total, help).
_DEVICE_COUNTERS = {
    "scans": ("odpm_scans", "Scans acquired from the device."),
    "errors": ("odpm_device_errors", "Acquisition errors (timeouts, device errors, I/O)."),
    "reconnects": ("odpm_reconnects", "Reconnections to the device."),
    "crc_failures": ("odpm_crc_failures", "Stream frames rejected for a bad CRC."),
    "lost_frames": ("odpm_lost_frames", "Stream frames missing from the sequence."),
}

#: Request latency buckets (s): /latest answers in well under a millisecond
#: from memory, a history query or POST /scan can take seconds.
_LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)

_WORKER_STATES = ("connecting", "running", "backoff", "paused", "stopped", "replica")


class _ServiceCollector(Collector):
    def __init__(self, service: Service) -> None:
        self._service = service

    def collect(self) -> Iterator[Metric]:
        svc = self._service
        counters = {
            k: CounterMetricFamily(name, help_, labels=["device"])
            for k, (name, help_) in _DEVICE_COUNTERS.items()
        }
        stored = CounterMetricFamily(
            "odpm_readings_stored",
            "Readings analysed and committed to the journal.",
            labels=["device"],
        )
        failed = CounterMetricFamily(
            "odpm_processing_errors",
            "Scans that could not be analysed or stored.",
            labels=["device"],
        )
        state = GaugeMetricFamily(
            "odpm_device_state", "1 for the worker's current state.", labels=["device", "state"]
        )
        last = GaugeMetricFamily(
            "odpm_last_scan_timestamp_seconds",
            "Unix time of the device's last scan.",
            labels=["device"],
        )
        for dev in list(svc.devices.values()):
            snap = dev.snapshot()
            for k, fam in counters.items():
                fam.add_metric([snap.id], snap.counters.get(k, 0))
            stored.add_metric([snap.id], snap.readings_stored)
            failed.add_metric([snap.id], snap.processing_errors)
            states = (
                (*_WORKER_STATES, snap.state)
                if snap.state not in _WORKER_STATES
                else (_WORKER_STATES)
            )
            for s in states:
                state.add_metric([snap.id, s], 1.0 if s == snap.state else 0.0)
            if snap.last_scan_time is not None:
                last.add_metric([snap.id], snap.last_scan_time.timestamp())
        yield from counters.values()
        yield stored
        yield failed
        yield state
        yield last

        st = svc.storage_status()
        backlog = GaugeMetricFamily(
            "odpm_journal_backlog_rows", "Journal rows not yet forwarded to InfluxDB."
        )
        lag = GaugeMetricFamily(
            "odpm_forwarder_lag_seconds", "Age of the oldest journal row not yet forwarded."
        )
        if st.backlog_rows is not None:
            backlog.add_metric([], st.backlog_rows)
        if st.oldest_unforwarded_age_s is not None:
            lag.add_metric([], st.oldest_unforwarded_age_s)
        yield backlog
        yield lag
        if st.forwarded_rows is not None:
            fam = CounterMetricFamily("odpm_forwarded_rows", "Journal rows forwarded to InfluxDB.")
            fam.add_metric([], st.forwarded_rows)
            yield fam
        if st.dropped_rows is not None:
            fam = CounterMetricFamily(
                "odpm_journal_dropped_rows",
                "Unforwarded rows pruned because the journal hit its size cap.",
            )
            fam.add_metric([], st.dropped_rows)
            yield fam
        if svc.journal is not None:
            fam = CounterMetricFamily(
                "odpm_readings_dropped",
                "Readings lost, by reason: the journal could not be written (disk_full, "
                "read_only, io_error, corrupt, journal_error) or the size cap pruned them "
                "before they were forwarded (size_cap).",
                labels=["reason"],
            )
            for reason, n in svc.journal.faults.dropped().items():
                fam.add_metric([reason], n)
            yield fam
        if st.quarantined_batches is not None:
            fam = CounterMetricFamily(
                "odpm_forwarder_quarantined_batches",
                "Batches InfluxDB rejected as bad data, kept in the journal.",
            )
            fam.add_metric([], st.quarantined_batches)
            yield fam
        if st.influx_reachable is not None:
            up = GaugeMetricFamily("odpm_influxdb_up", "1 when InfluxDB answered its last ping.")
            up.add_metric([], 1.0 if st.influx_reachable else 0.0)
            yield up

        b = svc.broadcaster
        subs = GaugeMetricFamily("odpm_stream_clients", "Connected live-stream (SSE) clients.")
        subs.add_metric([], b.subscriber_count)
        yield subs
        dropped = CounterMetricFamily(
            "odpm_stream_events_dropped",
            "Live events dropped for slow clients (closed subscriptions).",
        )
        dropped.add_metric([], b.dropped)
        yield dropped
        if svc.traces is not None:
            archive = svc.traces.archive
            for name, help_, value in (
                ("odpm_traces_stored", "Traces kept in the archive.", archive.stored),
                ("odpm_traces_pruned", "Traces removed by archive retention.", archive.pruned),
            ):
                fam = CounterMetricFamily(name, help_)
                fam.add_metric([], value)
                yield fam

        active = GaugeMetricFamily(
            "odpm_alarms_active",
            "Alarms active now, per device and kind (device_lost included).",
            labels=["device", "kind"],
        )
        counts = collections.Counter((e.device_id, e.kind.value) for e in svc.active_alarms())
        for (device, kind), n in sorted(counts.items()):
            active.add_metric([device, kind], n)
        yield active


class ServiceMetrics:
    """The registry of one service, and the request-latency histogram the API records."""

    def __init__(self, service: Service) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_ServiceCollector(service))
        self.request_latency = Histogram(
            "odpm_http_request_duration_seconds",
            "HTTP request latency by route template, method and status.",
            labelnames=["method", "route", "status"],
            buckets=_LATENCY_BUCKETS_S,
            registry=self.registry,
        )
