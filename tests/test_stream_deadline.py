"""A stream-mode device that sends bytes but never a valid frame (real TCP, real simulator).

Before: the worker sat in the frame reader forever (``running``, 0 scans, 0 errors),
``running: false`` had no effect and shutdown abandoned the thread.  Now no valid
frame within the frame deadline is a ``DeviceTimeout``: counted, reconnected; and
the reader checks the stop/wake events between reads.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from drivers.simulator import SimulatorServer
from odpm.acquisition import AcquisitionWorker, BackoffPolicy, frame_deadline_s
from odpm.config import DeviceConfig
from odpm.models import RawScan
from tests.support.waiting import wait_for


class BabblingProxy:
    """A TCP proxy to a simulator that, once the client sends ``STRE:STAR``, replaces
    everything the simulator sends with random bytes (a wrong baud rate, line noise)."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"socket://127.0.0.1:{self.listener.getsockname()[1]}"
        self.connections = 0
        self._stop = threading.Event()
        self._socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            server = socket.create_connection(self.upstream)
            self._socks += [client, server]
            babbling = threading.Event()
            threading.Thread(target=self._up, args=(client, server, babbling), daemon=True).start()
            threading.Thread(
                target=self._down, args=(server, client, babbling), daemon=True
            ).start()

    def _up(self, client: socket.socket, server: socket.socket, babbling: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while data := client.recv(4096):
                if b"STRE:STAR" in data:
                    babbling.set()
                server.sendall(data)
        with contextlib.suppress(OSError):
            server.close()

    def _down(
        self, server: socket.socket, client: socket.socket, babbling: threading.Event
    ) -> None:
        with contextlib.suppress(OSError):
            while True:
                if babbling.is_set():
                    client.sendall(os.urandom(512))
                    time.sleep(0.005)
                    continue
                server.settimeout(0.05)
                try:
                    data = server.recv(4096)
                except TimeoutError:
                    continue
                if not data:
                    break
                if not babbling.is_set():  # frames only come after STRE:STAR: never pass
                    client.sendall(data)
        with contextlib.suppress(OSError):
            client.close()

    def close(self) -> None:
        self._stop.set()
        self.listener.close()
        for s in self._socks:
            with contextlib.suppress(OSError):
                s.close()


@pytest.fixture
def babbling() -> Iterator[BabblingProxy]:
    with SimulatorServer.start_tcp(seed=5) as sim:
        host, _, port = sim.address.removeprefix("socket://").rpartition(":")
        proxy = BabblingProxy((host, int(port)))
        try:
            yield proxy
        finally:
            proxy.close()


def test_random_bytes_are_a_timeout_and_stop_works(babbling: BabblingProxy) -> None:
    rate_hz = 20.0
    device = DeviceConfig(
        id="noisy", address=babbling.address, mode="stream", stream_rate_hz=rate_hz, timeout_s=1
    )
    scans: list[RawScan] = []
    w = AcquisitionWorker(device, scans.append, backoff=BackoffPolicy(base_s=0.05, cap_s=0.2))
    w.start()
    try:
        deadline_s = frame_deadline_s(rate_hz)
        wait_for(lambda: w.counters.errors >= 2, 15 + 4 * deadline_s, "two frame timeouts")
        assert "DeviceTimeout" in (w.last_error or "") and "no valid stream frame" in (
            w.last_error or ""
        )
        wait_for(lambda: w.counters.reconnects >= 1, 15, "a reconnect")
        assert babbling.connections >= 2 and scans == []
        # Pausing acquisition takes effect although the device never stops babbling.
        w.reconfigure(running=False)
        wait_for(lambda: w.state == "paused", 10, "paused")
    finally:
        t0 = time.monotonic()
        assert w.stop(5.0), "the worker thread did not end"
    assert time.monotonic() - t0 < 5.0 and w.state == "stopped"


def test_stop_while_reading_babble_is_prompt(babbling: BabblingProxy) -> None:
    """A long deadline (slow frame rate): stop must not wait for it."""
    device = DeviceConfig(
        id="slow", address=babbling.address, mode="stream", stream_rate_hz=0.1, timeout_s=1
    )
    w = AcquisitionWorker(device, lambda scan: None)
    w.start()
    wait_for(lambda: w.state == "running", 10, "streaming")
    time.sleep(0.5)  # inside the frame reader, fed random bytes
    t0 = time.monotonic()
    assert w.stop(5.0)
    assert time.monotonic() - t0 < 3.0, "stop waited for the frame deadline"
    assert frame_deadline_s(0.1) == 100.0
