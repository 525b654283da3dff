"""Serve a :class:`SimulatedOdpm96` on a TCP port or a pseudo-terminal.

Each connection is served by its own thread, which waits in ``poll`` on the
connection and on the server's wake pipe (written once at shutdown, never
read, so every thread sees it).  All file descriptors are non-blocking so a
client that stops reading cannot wedge a thread past shutdown.

Output can be paced to a baud rate (10 bits per byte, as 8N1 on a UART):
bytes leave on an absolute schedule, so sleeping late never lowers the
average rate below the line rate.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import threading
import time
import tty
from types import TracebackType

from drivers.simulator.device import SimulatedOdpm96
from drivers.simulator.protocol import ScpiSession

log = logging.getLogger(__name__)

#: Longest command line accepted; longer input is discarded with error -223.
MAX_COMMAND_BYTES = 4096
#: How often an idle connection looks at device-wide faults (disconnect), s.
_POLL_S = 0.1
#: Pacing granularity: bytes are released in chunks of about this much line time, s.
_PACING_CHUNK_S = 0.005


class _ConnectionClosed(Exception):  # noqa: N818 (control flow, not an error)
    pass


class _Endpoint:
    """A non-blocking byte pipe: a socket or a pty master fd."""

    def __init__(self, fd: int, sock: socket.socket | None) -> None:
        self.fd = fd
        self.sock = sock
        os.set_blocking(fd, False)

    def recv(self) -> bytes:
        try:
            data = self.sock.recv(65536) if self.sock is not None else os.read(self.fd, 65536)
        except (BlockingIOError, InterruptedError):
            return b""
        except OSError as exc:
            raise _ConnectionClosed(str(exc)) from exc
        if not data and self.sock is not None:
            raise _ConnectionClosed("peer closed")
        return data

    def send(self, data: memoryview, stop: threading.Event, wake_fd: int) -> None:
        while data:
            if stop.is_set():
                raise _ConnectionClosed("server stopping")
            try:
                n = self.sock.send(data) if self.sock is not None else os.write(self.fd, data)
                data = data[n:]
            except (BlockingIOError, InterruptedError):
                poller = select.poll()
                poller.register(self.fd, select.POLLOUT)
                poller.register(wake_fd, select.POLLIN)
                poller.poll(_POLL_S * 1000)
            except OSError as exc:
                raise _ConnectionClosed(str(exc)) from exc


class _Connection:
    """Serves one client: reads lines, answers, emits stream frames, applies faults."""

    def __init__(self, server: SimulatorServer, endpoint: _Endpoint) -> None:
        self.server = server
        self.device = server.device
        self.endpoint = endpoint
        self.session = ScpiSession(server.device)
        self.disconnect_seen = server.device.disconnect_generation
        self.byte_budget: int | None = None
        self._line_free_at = 0.0
        self._next_frame_at = 0.0

    # -- output ----------------------------------------------------------------------
    def _check_disconnect(self) -> None:
        gen = self.device.disconnect_generation
        if gen != self.disconnect_seen and self.server.kind == "tcp":
            self.disconnect_seen = gen
            self.byte_budget = self.device.disconnect_after_bytes
        if self.byte_budget == 0:
            raise _ConnectionClosed("simulated disconnect")

    def send(self, data: bytes) -> None:
        self._check_disconnect()
        if self.byte_budget is not None and len(data) >= self.byte_budget:
            data = data[: self.byte_budget]
            self._paced_send(data)
            self.byte_budget = 0
            raise _ConnectionClosed("simulated disconnect")
        if self.byte_budget is not None:
            self.byte_budget -= len(data)
        self._paced_send(data)

    def _paced_send(self, data: bytes) -> None:
        stop, wake = self.server.stop_event, self.server.wake_fd
        baud = self.device.baud
        if not baud:
            self.endpoint.send(memoryview(data), stop, wake)
            return
        bytes_per_s = baud / 10.0
        chunk = max(1, int(bytes_per_s * _PACING_CHUNK_S))
        now = time.monotonic()
        if self._line_free_at < now - 2 * _PACING_CHUNK_S:
            self._line_free_at = now  # the line was idle: no credit for idle time
        view = memoryview(data)
        for i in range(0, len(view), chunk):
            piece = view[i : i + chunk]
            delay = self._line_free_at - time.monotonic()
            if delay > 0 and stop.wait(delay):
                raise _ConnectionClosed("server stopping")
            self.endpoint.send(piece, stop, wake)
            self._line_free_at += len(piece) / bytes_per_s

    # -- main loop -------------------------------------------------------------------
    def serve(self) -> None:
        buf = bytearray()
        stop = self.server.stop_event
        ep = self.endpoint
        wake_fd = self.server.wake_fd
        # poll, not select: a process serving hundreds of simulated devices has fds > 1024.
        poller = select.poll()
        poller.register(ep.fd, select.POLLIN)
        poller.register(wake_fd, select.POLLIN)
        try:
            while not stop.is_set():
                stall_s = self.device.stall_remaining_s()
                if stall_s > 0:
                    stop.wait(min(stall_s, _POLL_S))
                    self._next_frame_at = time.monotonic()
                    continue
                self._check_disconnect()
                timeout = _POLL_S
                if self.session.streaming:
                    timeout = min(timeout, max(self._next_frame_at - time.monotonic(), 0.0))
                events = dict(poller.poll(timeout * 1000))
                if wake_fd in events:
                    break
                if events.get(ep.fd, 0) & (select.POLLIN | select.POLLHUP | select.POLLERR):
                    buf += ep.recv()
                    self._handle_lines(buf)
                if not self.session.streaming:
                    garbage = self.device.take_idle_garbage()
                    if garbage:
                        self.send(self.device.garbage(garbage))
                    continue
                now = time.monotonic()
                if now >= self._next_frame_at:
                    self.send(self.session.next_frame())
                    period = 1.0 / self.device.stream_rate_hz
                    # Keep an absolute schedule, but never build a backlog of frames.
                    self._next_frame_at = max(self._next_frame_at + period, now - period)
        except _ConnectionClosed as exc:
            log.debug("simulator connection closed: %s", exc)

    def _handle_lines(self, buf: bytearray) -> None:
        while True:
            if self.device.stall_remaining_s() > 0:
                return  # the rest waits until the stall ends
            i = buf.find(b"\n")
            if i < 0:
                if len(buf) > MAX_COMMAND_BYTES:
                    del buf[:]
                    self.device.push_error(-223, "Too much data")
                return
            line = bytes(buf[:i])
            del buf[: i + 1]
            was_streaming = self.session.streaming
            answer = self.session.handle_line(line)
            if self.session.streaming and not was_streaming:
                self._next_frame_at = time.monotonic()
            if answer:
                self.send(answer)


class SimulatorServer:
    """A simulated ODPM-96 served on TCP or a pty; ``close()`` stops it and frees everything.

    Use :meth:`start_tcp` or :meth:`start_pty`; ``address`` is what a client
    passes to :func:`drivers.transport.open_transport`.
    """

    def __init__(self, device: SimulatedOdpm96, kind: str) -> None:
        self.device = device
        self.kind = kind
        self.stop_event = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        self._threads: set[threading.Thread] = set()
        self._threads_lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._pty_fds: tuple[int, int] | None = None
        self._pty_endpoint: _Endpoint | None = None
        self.address = ""
        self.port: int | None = None
        self.host: str | None = None
        self._closed = False

    @property
    def wake_fd(self) -> int:
        return self._wake_r

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def start_tcp(
        cls,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        seed: int | None = None,
        baud: int | None = None,
        device: SimulatedOdpm96 | None = None,
    ) -> SimulatorServer:
        """Listen on ``host:port`` (0 = a free port); ``address`` is ``socket://host:port``."""
        server = cls(device or SimulatedOdpm96(seed=seed), "tcp")
        if baud:
            server.device.set_baud(baud)
        try:
            lsock = socket.create_server((host, port), reuse_port=False)
            lsock.setblocking(False)
            server._listener = lsock
            server.host, server.port = lsock.getsockname()[:2]
            server.address = f"socket://{server.host}:{server.port}"
            server._spawn(server._accept_loop, "odpm-sim-accept")
        except BaseException:
            server.close()
            raise
        return server

    @classmethod
    def start_pty(
        cls,
        *,
        seed: int | None = None,
        baud: int | None = None,
        device: SimulatedOdpm96 | None = None,
    ) -> SimulatorServer:
        """Serve on a new pseudo-terminal; ``address`` is its ``/dev/pts/N``.

        The server keeps the slave side open too, so the master never sees a
        hang-up between clients (a client may close and reopen the path).
        """
        server = cls(device or SimulatedOdpm96(seed=seed), "pty")
        if baud:
            server.device.set_baud(baud)
        try:
            master, slave = os.openpty()
            server._pty_fds = (master, slave)
            tty.setraw(slave)
            server.address = os.ttyname(slave)
            endpoint = _Endpoint(master, None)
            server._pty_endpoint = endpoint
            server._spawn(lambda: _Connection(server, endpoint).serve(), "odpm-sim-pty")
        except BaseException:
            server.close()
            raise
        return server

    def _spawn(self, target: object, name: str) -> None:
        def run() -> None:
            try:
                target()  # type: ignore[operator]
            except Exception:
                log.exception("simulator thread %s failed", name)
            finally:
                with self._threads_lock:
                    self._threads.discard(threading.current_thread())

        t = threading.Thread(target=run, name=name, daemon=True)
        with self._threads_lock:
            self._threads.add(t)
        t.start()

    def _accept_loop(self) -> None:
        assert self._listener is not None
        lsock = self._listener
        poller = select.poll()
        poller.register(lsock.fileno(), select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        while not self.stop_event.is_set():
            events = dict(poller.poll())
            if self._wake_r in events:
                return
            try:
                conn, _ = lsock.accept()
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def serve(c: socket.socket = conn) -> None:
                with c:
                    _Connection(self, _Endpoint(c.fileno(), c)).serve()

            self._spawn(serve, "odpm-sim-conn")

    # -- shutdown ------------------------------------------------------------------------------
    def close(self, timeout_s: float = 5.0) -> None:
        """Stop serving, join every thread, close every descriptor. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.stop_event.set()
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        deadline = time.monotonic() + timeout_s
        while True:
            with self._threads_lock:
                threads = list(self._threads)
            if not threads:
                break
            for t in threads:
                t.join(max(deadline - time.monotonic(), 0.0))
            if time.monotonic() >= deadline:
                log.warning("simulator threads still running after %.1f s", timeout_s)
                break
        if self._listener is not None:
            self._listener.close()
        if self._pty_fds is not None:
            for fd in self._pty_fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> SimulatorServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SimulatorServer({self.address!r})"
