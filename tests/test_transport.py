"""Transports and the driver over real links to the simulator: pty, TCP (pyserial), TCP (pyvisa)."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import serial

from drivers.errors import DeviceTimeout, Disconnected
from drivers.odpm96 import Odpm96
from drivers.simulator import SimulatorServer
from drivers.transport import SerialTransport, VisaTransport, open_transport


@pytest.fixture
def tcp_sim() -> Iterator[SimulatorServer]:
    with SimulatorServer.start_tcp(seed=11) as server:
        yield server


@pytest.fixture
def pty_sim() -> Iterator[SimulatorServer]:
    with SimulatorServer.start_pty(seed=12) as server:
        yield server


def _exercise(driver: Odpm96) -> None:
    """Every kind of exchange: query, setting + error check, 96 values, block, stream."""
    assert driver.identify().startswith("PPI,ODPM-96,")
    grid = driver.read_port_grid()
    assert grid.count == 96
    driver.set_averaging(4)
    assert driver.read_averaging() == 4
    power = driver.read_powers()
    assert power.shape == (96,) and np.nanmax(power) > -30
    trace = driver.read_trace()
    assert trace.power_dbm.shape == (3881,) and trace.rbw_ghz == 6.25
    assert trace.frequency_thz[-1] == pytest.approx(196.1)
    with driver.stream(200) as stream:
        frames = [next(stream) for _ in range(10)]
    assert [f.sequence for f in frames] == list(range(10))
    # after the stream the line is clean again
    assert driver.identify().startswith("PPI,ODPM-96,")


def test_pyserial_over_a_real_pty(pty_sim: SimulatorServer) -> None:
    assert pty_sim.address.startswith("/dev/pts/")
    with Odpm96(open_transport(pty_sim.address, timeout_s=2.0)) as driver:
        assert isinstance(driver.transport, SerialTransport)
        _exercise(driver)


def test_pyserial_socket_url(tcp_sim: SimulatorServer) -> None:
    assert tcp_sim.address == f"socket://127.0.0.1:{tcp_sim.port}"
    with Odpm96(open_transport(tcp_sim.address, timeout_s=2.0)) as driver:
        _exercise(driver)


def test_pyvisa_py_tcpip_socket(tcp_sim: SimulatorServer) -> None:
    address = f"TCPIP::127.0.0.1::{tcp_sim.port}::SOCKET"
    with Odpm96(open_transport(address, timeout_s=2.0)) as driver:
        assert isinstance(driver.transport, VisaTransport)
        _exercise(driver)


def test_loop_url_echoes() -> None:
    t = open_transport("loop://", timeout_s=0.2)
    t.write(b"hello\r\nworld\n#3abc")
    assert t.read_line() == b"hello"
    assert t.read_line() == b"world"
    assert t.read_exact(5) == b"#3abc"
    with pytest.raises(DeviceTimeout):
        t.read_line()
    t.close()
    with pytest.raises(Disconnected):
        t.write(b"x")


def test_timeout_setter_validates() -> None:
    t = open_transport("loop://", timeout_s=0.2)
    with pytest.raises(ValueError, match="positive"):
        t.timeout_s = 0
    t.close()


def test_refused_connection_is_disconnected() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(Disconnected, match="cannot open"):
        open_transport(f"socket://127.0.0.1:{port}", timeout_s=0.5)


def test_bad_kind() -> None:
    with pytest.raises(ValueError, match="auto, serial or visa"):
        open_transport("loop://", kind="usb")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "make_address",
    [
        lambda s: s.address,
        lambda s: f"TCPIP::127.0.0.1::{s.port}::SOCKET",
    ],
    ids=["pyserial", "pyvisa"],
)
def test_stall_times_out_then_recovers(
    tcp_sim: SimulatorServer, make_address: Callable[[SimulatorServer], str]
) -> None:
    tcp_sim.device.stall(0.6)
    with Odpm96(open_transport(make_address(tcp_sim), timeout_s=0.2)) as driver:
        t0 = time.monotonic()
        with pytest.raises(DeviceTimeout):
            driver.identify()
        assert time.monotonic() - t0 < 1.0
    time.sleep(0.6)
    # A new connection (what the worker does after a timeout) gets clean answers.
    with Odpm96(open_transport(make_address(tcp_sim), timeout_s=1.0)) as driver:
        assert driver.identify().startswith("PPI")


def test_disconnect_mid_trace_is_reported(tcp_sim: SimulatorServer) -> None:
    with Odpm96(open_transport(tcp_sim.address, timeout_s=1.0)) as driver:
        driver.read_trace_axis()
        tcp_sim.device.disconnect(after_bytes=5000)
        with pytest.raises(Disconnected):
            driver.read_trace()
    with Odpm96(open_transport(tcp_sim.address, timeout_s=1.0)) as driver:
        assert driver.read_trace().power_dbm.size == 3881


def test_pty_survives_client_reopen(pty_sim: SimulatorServer) -> None:
    for _ in range(3):
        port = serial.Serial(pty_sim.address, timeout=1.0)
        with Odpm96(SerialTransport(pty_sim.address, port=port)) as driver:
            assert driver.identify().startswith("PPI")


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_servers_release_everything() -> None:
    before_fds, before_threads = _fds(), threading.active_count()
    for _ in range(3):
        with SimulatorServer.start_tcp(seed=1) as tcp, SimulatorServer.start_pty(seed=2) as pty:
            for address in (tcp.address, pty.address):
                with Odpm96(open_transport(address, timeout_s=1.0)) as driver:
                    driver.identify()
            # a client still connected at shutdown must not hold the server up
            lingering = Odpm96(open_transport(tcp.address, timeout_s=1.0))
            lingering.identify()
        lingering.close()
    assert _fds() == before_fds
    assert threading.active_count() == before_threads


def test_simulator_serves_descriptors_above_1024() -> None:
    """select() cannot watch fd >= 1024; a process simulating hundreds of devices has those."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"fd hard limit {hard} too low")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    filler: list[int] = []
    try:
        while len(filler) < 1100 and (not filler or filler[-1] < 1030):
            filler.append(os.open(os.devnull, os.O_RDONLY))
        with SimulatorServer.start_tcp(seed=3) as server:
            assert server.port is not None
            with socket.create_connection(("127.0.0.1", server.port), timeout=2.0) as s:
                assert s.fileno() > 1024
                s.sendall(b"*IDN?\n")
                answer = b""
                while not answer.endswith(b"\n"):
                    answer += s.recv(100)
            assert answer.startswith(b"PPI,ODPM-96,")
    finally:
        for fd in filler:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
