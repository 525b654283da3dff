"""Byte transports to an instrument: pyserial (paths and URLs) and pyvisa (resource strings).

A transport moves bytes and knows nothing of SCPI.  It offers exactly what the
ODPM-96 driver needs: write, read one LF-terminated line, read an exact number
of bytes (binary blocks), read "some" bytes (binary stream frames), a timeout,
and a lock so that one command/response exchange is never interleaved with
another thread's (pyvisa and pyserial do not order calls across threads).

Failures come out as :mod:`drivers.errors` types: no bytes in time ->
:class:`DeviceTimeout`; the link failing -> :class:`Disconnected`.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from abc import ABC, abstractmethod
from typing import Any, Literal

import serial
from serial.urlhandler.protocol_socket import Serial as _SocketSerial

from drivers.errors import DeviceTimeout, Disconnected, DriverError, ProtocolError

#: A line longer than this is not an ODPM-96 answer: something is streaming garbage.
MAX_LINE_BYTES = 64 * 1024

TransportKind = Literal["auto", "serial", "visa"]


class Transport(ABC):
    """One open link to one instrument.

    ``lock`` is re-entrant so that a driver can hold it across a command and
    the ``SYST:ERR?`` query that checks it.
    """

    def __init__(self, address: str) -> None:
        self.address = address
        self.lock = threading.RLock()
        #: A longer line is garbage, not an answer; drivers whose ASCII answers are long
        #: (an OSA's 10,001-point trace is ~200 kB) raise it.
        self.max_line_bytes = MAX_LINE_BYTES

    @property
    @abstractmethod
    def timeout_s(self) -> float: ...

    @timeout_s.setter
    @abstractmethod
    def timeout_s(self, value: float) -> None: ...

    @abstractmethod
    def write(self, data: bytes) -> None:
        """Send all of ``data``."""

    @abstractmethod
    def read_line(self) -> bytes:
        """One line without its LF (and without a CR before it)."""

    @abstractmethod
    def read_exact(self, n: int) -> bytes:
        """Exactly ``n`` bytes, or :class:`DeviceTimeout` if they do not all arrive in time."""

    @abstractmethod
    def read_some(self, max_bytes: int) -> bytes:
        """Between 1 and ``max_bytes`` bytes: whatever is there, waiting up to the timeout."""

    @abstractmethod
    def discard_input(self) -> None:
        """Drop bytes already received but not read (after a stream stops)."""

    @abstractmethod
    def close(self) -> None:
        """Release the link; idempotent."""

    @property
    @abstractmethod
    def closed(self) -> bool: ...

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.address!r})"


def _check_timeout(timeout_s: float) -> float:
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be positive, got {timeout_s}")
    return float(timeout_s)


class SerialTransport(Transport):
    """pyserial: a device path (``/dev/ttyUSB0``, ``/dev/pts/3``) or any pyserial URL
    (``socket://host:port``, ``rfc2217://host:port``, ``loop://``).

    Reads are buffered here rather than with ``read_until``: pyserial reads one
    byte per system call there, which costs milliseconds per 96-value answer.
    We block for the first byte, then drain whatever else is waiting with a
    zero timeout (which every pyserial backend treats as non-blocking).
    """

    def __init__(
        self,
        address: str,
        *,
        baudrate: int = 115200,
        timeout_s: float = 2.0,
        port: serial.SerialBase | None = None,
    ) -> None:
        super().__init__(address)
        self._timeout_s = _check_timeout(timeout_s)
        self._buf = bytearray()
        if port is not None:
            self._ser = port
        else:
            try:
                self._ser = serial.serial_for_url(
                    address,
                    baudrate=baudrate,
                    timeout=self._timeout_s,
                    write_timeout=self._timeout_s,
                )
            except (serial.SerialException, OSError, ValueError) as exc:
                raise Disconnected(f"cannot open {address}: {exc}") from exc
        self._ser_timeout: float | None = self._ser.timeout

    @property
    def timeout_s(self) -> float:
        return self._timeout_s

    @timeout_s.setter
    def timeout_s(self, value: float) -> None:
        self._timeout_s = _check_timeout(value)

    @property
    def closed(self) -> bool:
        return not self._ser.is_open

    def _set_ser_timeout(self, value: float) -> None:
        if self._ser_timeout != value:
            self._ser.timeout = value
            self._ser_timeout = value

    def _fill(self, deadline: float, what: str) -> None:
        """Append at least one byte to the buffer, or raise by the deadline."""
        if self.closed:
            raise Disconnected(f"{self.address}: transport is closed")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DeviceTimeout(f"{self.address}: no complete {what} within {self._timeout_s:g} s")
        try:
            self._set_ser_timeout(remaining)
            first = self._ser.read(1)
            if not first:
                raise DeviceTimeout(
                    f"{self.address}: no complete {what} within {self._timeout_s:g} s"
                )
            self._buf += first
            self._set_ser_timeout(0)
            self._buf += self._ser.read(65536)
        except serial.SerialException as exc:
            raise Disconnected(f"{self.address}: {exc}") from exc
        except OSError as exc:
            raise Disconnected(f"{self.address}: {exc}") from exc

    def write(self, data: bytes) -> None:
        if self.closed:
            raise Disconnected(f"{self.address}: transport is closed")
        try:
            self._ser.write(data)
            self._ser.flush()
        except serial.SerialTimeoutException as exc:
            raise DeviceTimeout(f"{self.address}: write timed out") from exc
        except (serial.SerialException, OSError) as exc:
            raise Disconnected(f"{self.address}: {exc}") from exc

    def read_line(self) -> bytes:
        deadline = time.monotonic() + self._timeout_s
        start = 0
        while True:
            i = self._buf.find(b"\n", start)
            if i >= 0:
                line = bytes(self._buf[:i])
                del self._buf[: i + 1]
                return line[:-1] if line.endswith(b"\r") else line
            start = len(self._buf)
            if start > self.max_line_bytes:
                self._buf.clear()
                raise ProtocolError(f"{self.address}: line longer than {self.max_line_bytes} bytes")
            self._fill(deadline, "line")

    def read_exact(self, n: int) -> bytes:
        deadline = time.monotonic() + self._timeout_s
        while len(self._buf) < n:
            self._fill(deadline, f"{n}-byte read")
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def read_some(self, max_bytes: int) -> bytes:
        if not self._buf:
            self._fill(time.monotonic() + self._timeout_s, "read")
        out = bytes(self._buf[:max_bytes])
        del self._buf[:max_bytes]
        return out

    def discard_input(self) -> None:
        self._buf.clear()
        try:
            self._ser.reset_input_buffer()  # type: ignore[attr-defined]
        except (serial.SerialException, OSError) as exc:
            raise Disconnected(f"{self.address}: {exc}") from exc

    def close(self) -> None:
        if isinstance(self._ser, _SocketSerial) and self._ser.is_open:
            # pyserial's socket:// close() sleeps 0.3 s "to give the server time" before a
            # quick reconnect; the worker has its own backoff, so close the socket here.
            sock: socket.socket | None = getattr(self._ser, "_socket", None)
            self._ser._socket = None  # type: ignore[attr-defined]
            self._ser.is_open = False
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            return
        with contextlib.suppress(serial.SerialException, OSError):
            self._ser.close()


class VisaTransport(Transport):
    """pyvisa with the pure-Python pyvisa-py backend (``@py``) unless told otherwise.

    Any VISA resource string works: ``TCPIP::host::5025::SOCKET``,
    ``ASRL/dev/ttyUSB0::INSTR``, USB, GPIB.  Raw socket and serial resources
    need the termination characters set explicitly; binary blocks are read
    with termination disabled so a 0x0A inside the payload does not end them.

    The ResourceManager is shared per VISA library by pyvisa itself, so we
    close only our resource, never the manager (that would close every other
    device's resource too).
    """

    def __init__(
        self,
        address: str,
        *,
        baudrate: int = 115200,
        timeout_s: float = 2.0,
        backend: str = "@py",
    ) -> None:
        import pyvisa
        import pyvisa.constants

        super().__init__(address)
        self._pyvisa = pyvisa
        self._timeout_s = _check_timeout(timeout_s)
        self._closed = False
        kwargs: dict[str, Any] = {
            "read_termination": "\n",
            "write_termination": "",
            "timeout": self._timeout_s * 1000.0,
        }
        if address.upper().startswith("ASRL"):
            kwargs["baud_rate"] = baudrate
        try:
            self._rm = pyvisa.ResourceManager(backend)
            self._res: Any = self._rm.open_resource(address, **kwargs)
        except (pyvisa.Error, OSError, ValueError) as exc:
            raise Disconnected(f"cannot open {address}: {exc}") from exc

    @property
    def timeout_s(self) -> float:
        return self._timeout_s

    @timeout_s.setter
    def timeout_s(self, value: float) -> None:
        self._timeout_s = _check_timeout(value)
        self._res.timeout = self._timeout_s * 1000.0

    @property
    def closed(self) -> bool:
        return self._closed

    def _translate(self, exc: Exception, what: str) -> DriverError:
        errors = self._pyvisa.errors
        if isinstance(exc, errors.VisaIOError):
            if exc.error_code == self._pyvisa.constants.StatusCode.error_timeout:
                return DeviceTimeout(
                    f"{self.address}: no complete {what} within {self._timeout_s:g} s"
                )
            return Disconnected(f"{self.address}: {exc}")
        return Disconnected(f"{self.address}: {exc}")

    def _guard(self) -> None:
        if self._closed:
            raise Disconnected(f"{self.address}: transport is closed")

    def write(self, data: bytes) -> None:
        self._guard()
        try:
            self._res.write_raw(data)
        except (self._pyvisa.Error, OSError) as exc:
            raise self._translate(exc, "write") from exc

    def read_line(self) -> bytes:
        self._guard()
        try:
            line: bytes = self._res.read_raw()
        except (self._pyvisa.Error, OSError) as exc:
            raise self._translate(exc, "line") from exc
        if not line.endswith(b"\n"):
            raise DeviceTimeout(f"{self.address}: line without terminator: {line[:40]!r}")
        line = line[:-1]
        return line[:-1] if line.endswith(b"\r") else line

    def read_exact(self, n: int) -> bytes:
        self._guard()
        try:
            data: bytes = self._res.read_bytes(n, break_on_termchar=False)
        except (self._pyvisa.Error, OSError) as exc:
            raise self._translate(exc, f"{n}-byte read") from exc
        if len(data) != n:
            raise DeviceTimeout(f"{self.address}: got {len(data)} of {n} bytes")
        return data

    def read_some(self, max_bytes: int) -> bytes:
        self._guard()
        try:
            data, _status = self._res.visalib.read(self._res.session, max_bytes)
        except (self._pyvisa.Error, OSError) as exc:
            raise self._translate(exc, "read") from exc
        if not data:
            raise DeviceTimeout(f"{self.address}: nothing received within {self._timeout_s:g} s")
        return bytes(data)

    def discard_input(self) -> None:
        self._guard()
        try:
            self._res.clear()
        except (self._pyvisa.Error, OSError, NotImplementedError):
            # Raw sockets have no device clear; drain whatever is buffered instead.
            old = self._res.timeout
            self._res.timeout = 50
            try:
                while True:
                    self._res.visalib.read(self._res.session, 65536)
            except (self._pyvisa.Error, OSError):
                pass
            finally:
                self._res.timeout = old

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(self._pyvisa.Error, OSError):
            self._res.close()


def open_transport(
    address: str,
    *,
    kind: TransportKind = "auto",
    baudrate: int = 115200,
    timeout_s: float = 2.0,
) -> Transport:
    """Open ``address`` with pyserial or pyvisa.

    ``kind="auto"`` picks VISA for resource strings (they contain ``::``) and
    pyserial for everything else (device paths and pyserial URLs).
    """
    if not address:
        raise ValueError("address must not be empty")
    if kind == "auto":
        kind = "visa" if "::" in address else "serial"
    if kind == "visa":
        return VisaTransport(address, baudrate=baudrate, timeout_s=timeout_s)
    if kind == "serial":
        return SerialTransport(address, baudrate=baudrate, timeout_s=timeout_s)
    raise ValueError(f"transport kind must be auto, serial or visa, got {kind!r}")
