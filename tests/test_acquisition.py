"""The acquisition worker against the simulator over real TCP: modes, faults, reconnects, leaks."""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC
from functools import partial

import numpy as np
import pytest

from drivers.errors import DriverError
from drivers.odpm96 import Odpm96
from drivers.simulator import SimulatorServer
from drivers.transport import open_transport
from odpm.acquisition import AcquisitionWorker, BackoffPolicy
from odpm.config import DeviceConfig
from odpm.models import PortScan, RawScan, TraceScan

FAST_BACKOFF = BackoffPolicy(base_s=0.01, cap_s=0.05)
MakeWorker = Callable[..., AcquisitionWorker]


@pytest.fixture
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer.start_tcp(seed=21) as server:
        yield server


class Collector:
    def __init__(self) -> None:
        self.scans: list[RawScan] = []
        self.lock = threading.Lock()

    def __call__(self, scan: RawScan) -> None:
        with self.lock:
            self.scans.append(scan)

    def count(self) -> int:
        with self.lock:
            return len(self.scans)


def wait_for(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


def _device(address: str, **kw: object) -> DeviceConfig:
    base: dict[str, object] = {
        "id": "dev1",
        "address": address,
        "timeout_s": 0.5,
        "interval_s": 0.02,
    }
    base.update(kw)
    return DeviceConfig.model_validate(base)


@pytest.fixture
def make_worker() -> Iterator[MakeWorker]:
    workers: list[AcquisitionWorker] = []

    def make(
        device: DeviceConfig, on_scan: Callable[[RawScan], None], **kw: object
    ) -> AcquisitionWorker:
        kw.setdefault("backoff", FAST_BACKOFF)
        w = AcquisitionWorker(device, on_scan, **kw)  # type: ignore[arg-type]
        workers.append(w)
        w.start()
        return w

    yield make
    for w in workers:
        assert w.stop(5.0)


def test_power_mode_scans(sim: SimulatorServer, make_worker: MakeWorker) -> None:
    got = Collector()
    w = make_worker(_device(sim.address, averaging=4), got)
    wait_for(lambda: got.count() >= 5)
    assert w.state == "running"
    assert w.identity is not None and w.identity.startswith("PPI,ODPM-96")
    assert sim.device.averaging == 4
    scan = got.scans[0]
    assert isinstance(scan, PortScan) and scan.mode == "power"
    assert scan.time.tzinfo is UTC and scan.temperature_c is not None
    assert scan.power_dbm.shape == scan.port_frequency_thz.shape == (96,)
    assert scan.port_frequency_thz[0] == pytest.approx(191.30)
    assert w.counters.scans >= 5 and w.counters.errors == 0
    assert w.last_scan_time is not None
    assert w.stop(2.0)
    assert w.state in ("stopped",)


def test_trace_mode_and_reconfigure(sim: SimulatorServer, make_worker: MakeWorker) -> None:
    got = Collector()
    w = make_worker(_device(sim.address, mode="trace"), got)
    wait_for(lambda: got.count() >= 2)
    assert isinstance(got.scans[-1], TraceScan) and got.scans[-1].rbw_ghz == 6.25
    w.reconfigure(mode="power", averaging=8)
    wait_for(lambda: isinstance(got.scans[-1], PortScan))
    assert sim.device.averaging == 8 and w.averaging == 8
    w.reconfigure(running=False)
    wait_for(lambda: w.state == "paused")
    n = got.count()
    future = w.request_scan("trace")
    scan = future.result(timeout=5)
    assert isinstance(scan, TraceScan)
    time.sleep(0.1)
    assert got.count() == n + 1  # only the requested scan while paused
    w.reconfigure(running=True)
    wait_for(lambda: got.count() > n + 3)
    with pytest.raises(ValueError, match="mode"):
        w.reconfigure(mode="fast")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="averaging"):
        w.reconfigure(averaging=0)


def test_stream_mode_counts_faults(sim: SimulatorServer, make_worker: MakeWorker) -> None:
    got = Collector()
    w = make_worker(_device(sim.address, mode="stream", stream_rate_hz=200), got)
    wait_for(lambda: got.count() >= 20)
    sim.device.inject_crc_errors(3)
    wait_for(lambda: len(sim.device.damaged_frames) == 3)
    sim.device.inject_dropped_bytes(2)
    wait_for(lambda: len(sim.device.damaged_frames) == 5)
    n = got.count()
    wait_for(lambda: got.count() >= n + 20)
    c = w.counters
    assert c.crc_failures >= 5 and c.lost_frames == 5
    assert all(s.mode == "stream" for s in got.scans)
    times = [s.time for s in got.scans]
    assert times == sorted(times)
    # an on-demand scan interrupts the stream, then streaming resumes
    assert isinstance(w.request_scan().result(timeout=5), PortScan)
    n = got.count()
    wait_for(lambda: got.count() >= n + 10)
    assert w.counters.errors == 0


def test_stream_faults_every_intact_frame_once_in_order(sim: SimulatorServer) -> None:
    rounds = [(500, 0, 0), (0, 2, 0), (0, 0, 2), (300, 1, 1), (1000, 0, 3)]
    with Odpm96(open_transport(sim.address, timeout_s=1.0)) as driver:
        with driver.stream(500) as stream:
            seqs: list[int] = []
            for garbage, crc, drop in rounds:
                while len(seqs) < 10 * (1 + rounds.index((garbage, crc, drop))):
                    seqs += [f.sequence for f in stream.next_batch()]
                sim.device.inject_garbage(garbage)
                sim.device.inject_crc_errors(crc)
                sim.device.inject_dropped_bytes(drop)
            while len(seqs) < 80:
                seqs += [f.sequence for f in stream.next_batch()]
        damaged = set(sim.device.damaged_frames)
        assert len(damaged) == sum(max(r[1], r[2]) for r in rounds)  # CRC + drop may share a frame
        expected = [s for s in range(seqs[-1] + 1) if s not in damaged]
        assert seqs == expected  # in order, none twice, no intact frame missing
        assert stream.crc_failures >= len(damaged)
        assert stream.lost_frames == len(damaged)
        assert driver.identify().startswith("PPI")


def test_disconnect_mid_scan_reconnects_and_resumes(
    sim: SimulatorServer, make_worker: MakeWorker
) -> None:
    got = Collector()
    w = make_worker(_device(sim.address, mode="trace"), got)
    wait_for(lambda: got.count() >= 2)
    sim.device.disconnect(after_bytes=6000)  # inside the next 15.5 kB trace block
    wait_for(lambda: w.counters.reconnects >= 1)
    n = got.count()
    wait_for(lambda: got.count() >= n + 3)
    # Issue 11: the error is history once the link works again; when and how often stay.
    assert w.counters.errors >= 1 and w.last_error is None and w.last_error_at is not None
    assert w.state == "running"


def test_stall_times_out_and_recovers(sim: SimulatorServer, make_worker: MakeWorker) -> None:
    got = Collector()
    w = make_worker(_device(sim.address, timeout_s=0.2), got)
    wait_for(lambda: got.count() >= 2)
    sim.device.stall(0.8)
    wait_for(lambda: w.counters.errors >= 1)
    assert "DeviceTimeout" in (w.last_error or "")
    n = got.count()
    wait_for(lambda: got.count() >= n + 3, timeout_s=5.0)
    assert w.state == "running"
    wait_for(lambda: w.last_error is None)  # cleared by the reconnect


class RecordingBackoff(BackoffPolicy):
    """The real policy, remembering the attempt numbers it was asked about."""

    def __init__(self, base_s: float, cap_s: float) -> None:
        super().__init__(base_s, cap_s)
        object.__setattr__(self, "attempts", [])

    def delay_s(self, attempt: int, rng: random.Random) -> float:
        self.attempts.append(attempt)  # type: ignore[attr-defined]
        return super().delay_s(attempt, rng)


def test_backoff_grows_after_a_working_device_goes_away(
    make_worker: MakeWorker, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 11: a device that had worked and then vanished was retried every 0-0.2 s
    forever (the attempt counter restarted on every failed open), with a WARNING each."""
    backoff = RecordingBackoff(base_s=0.001, cap_s=0.004)
    server = SimulatorServer.start_tcp(seed=5)
    got = Collector()
    with caplog.at_level(logging.WARNING, logger="odpm.acquisition"):
        w = make_worker(_device(server.address), got, backoff=backoff)
        wait_for(lambda: got.count() >= 2)
        server.close()
        wait_for(lambda: len(backoff.attempts) >= 40, timeout_s=20)  # type: ignore[attr-defined]
    attempts: list[int] = backoff.attempts[:40]  # type: ignore[attr-defined]
    assert attempts[:6] == [0, 1, 2, 3, 4, 5]  # grows (to the cap), never back to 0
    assert w.last_error is not None
    warnings = [r for r in caplog.records if "reconnecting in" in r.getMessage()]
    # One line per backoff step (1, 2, 4, 8, 16, 32 ...), each counting the repeats,
    # plus the first of each distinct error text: a handful, not forty.
    assert 3 <= len(warnings) <= 12, [r.getMessage() for r in warnings]
    assert any("times since the last report" in r.getMessage() for r in warnings)


def test_unreachable_device_backs_off(make_worker: MakeWorker) -> None:
    w = make_worker(_device("socket://127.0.0.1:1"), Collector())
    wait_for(lambda: w.counters.errors >= 3)
    assert w.state in ("backoff", "connecting")
    assert "Disconnected" in (w.last_error or "")
    future = w.request_scan()
    assert w.stop(2.0)
    with pytest.raises((DriverError, RuntimeError)):
        future.result(timeout=1)


def test_callback_errors_do_not_kill_the_worker(
    sim: SimulatorServer, make_worker: MakeWorker
) -> None:
    calls = Collector()

    def bad(scan: RawScan) -> None:
        calls(scan)
        raise RuntimeError("pipeline bug")

    w = make_worker(_device(sim.address), bad)
    wait_for(lambda: calls.count() >= 5)
    assert w.counters.callback_errors >= 5 and w.counters.errors == 0
    assert w.state == "running"


def test_stop_is_prompt_while_stalled(sim: SimulatorServer) -> None:
    w = AcquisitionWorker(_device(sim.address, timeout_s=1.0), Collector(), backoff=FAST_BACKOFF)
    w.start()
    wait_for(lambda: w.counters.scans >= 1)
    sim.device.stall(3.0)
    time.sleep(0.1)
    t0 = time.monotonic()
    w.stop(0.2)
    assert time.monotonic() - t0 < 0.5
    assert w.stop(2.0)  # the blocked read ends with the transport timeout
    assert w.state == "stopped"


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _running_with(w: AcquisitionWorker, reconnects: int) -> bool:
    return w.state == "running" and w.counters.reconnects == reconnects


def _more_than(got: Collector, n: int) -> bool:
    return got.count() > n


def _reconnected(w: AcquisitionWorker, reconnects: int) -> bool:
    return w.counters.reconnects == reconnects


def test_100_forced_reconnects_leak_nothing(sim: SimulatorServer) -> None:
    got = Collector()
    w = AcquisitionWorker(_device(sim.address, interval_s=0.0), got, backoff=FAST_BACKOFF)
    w.start()
    try:
        baseline: tuple[int, int] | None = None
        for i in range(100):
            wait_for(partial(_running_with, w, i))
            wait_for(partial(_more_than, got, got.count()))
            sim.device.disconnect()
            wait_for(partial(_reconnected, w, i + 1))
            if i == 0:
                wait_for(lambda: w.state == "running")
                baseline = (_fds(), threading.active_count())
        wait_for(lambda: w.state == "running")
        assert baseline is not None
        assert _fds() <= baseline[0]
        assert threading.active_count() <= baseline[1]
        assert w.counters.reconnects == 100
        assert np.isfinite(got.scans[-1].power_dbm).any()
    finally:
        assert w.stop(5.0)
