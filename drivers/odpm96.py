"""Driver for the ODPM-96 optical channel monitor (wire protocol: docs/protocol.md).

The driver turns commands into bytes and answers into numpy arrays and typed
errors.  It never retries, reconnects or sleeps: a failure is raised at once
and the acquisition worker decides what to do (close, back off, reconnect).

Setting commands are followed by ``SYST:ERR?`` because the device answers a
bad command with silence and a queued error; without the check a rejected
``SENS:AVER 99`` would go unnoticed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntFlag
from types import TracebackType
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from drivers.errors import DeviceTimeout, DriverError, ProtocolError
from drivers.ieee488 import read_definite_block
from drivers.scpi import ScpiInstrument, parse_int
from drivers.stream import StreamFrame, StreamParser
from drivers.transport import Transport
from odpm.grid import PortGrid

#: ``MEAS:POW?`` reports this for a port below the detection floor.
BELOW_FLOOR_DBM = -99.99
#: Largest binary block we accept (a 3881-point trace is 15.5 kB).
MAX_BLOCK_BYTES = 16 * 1024 * 1024


class DeviceStatus(IntFlag):
    """``STAT:COND?`` bits."""

    MEASURING = 1
    TEC_UNLOCKED = 2
    LOSS_OF_SIGNAL = 4
    OVERLOAD = 8


class Trace(NamedTuple):
    """A scanned spectrum: ``power_dbm[k]`` at ``frequency_thz[k]`` through an RBW filter.

    A tuple, so ``frequency_thz, power_dbm, rbw_ghz = driver.read_trace()`` works.
    """

    frequency_thz: npt.NDArray[np.float64]
    power_dbm: npt.NDArray[np.float32]
    rbw_ghz: float


@dataclass(frozen=True, slots=True)
class TraceAxis:
    start_thz: float
    step_ghz: float
    points: int
    rbw_ghz: float

    @property
    def frequency_thz(self) -> npt.NDArray[np.float64]:
        return self.start_thz + np.arange(self.points, dtype=np.float64) * (self.step_ghz / 1000.0)


def _parse_float(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ProtocolError(f"{what}: expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise ProtocolError(f"{what}: expected a finite number, got {text!r}")
    return value


class Odpm96(ScpiInstrument):
    """One ODPM-96 reached through ``transport`` (which the driver owns and closes)."""

    #: Acquisition modes this driver offers (see :mod:`drivers.registry`).
    modes: tuple[str, ...] = ("power", "trace", "stream")

    def __init__(self, transport: Transport, *, port_count: int = 96) -> None:
        super().__init__(transport)
        self.port_count = port_count
        self._trace_axis: TraceAxis | None = None

    # -- identity and settings ----------------------------------------------------
    def identify(self) -> str:
        """The ``*IDN?`` answer; ProtocolError unless it names an ODPM-96."""
        idn = self.query("*IDN?")
        fields = idn.split(",")
        if len(fields) != 4 or fields[1].strip().upper() != "ODPM-96":
            raise ProtocolError(f"*IDN?: not an ODPM-96: {idn!r}")
        return idn

    def reset(self) -> None:
        self._trace_axis = None
        self.command("*RST")

    def clear_status(self) -> None:
        self.write("*CLS")

    def operation_complete(self) -> bool:
        return self.query("*OPC?") == "1"

    def read_port_grid(self) -> PortGrid:
        first_thz = _parse_float(self.query("SENS:GRID:STAR?"), "SENS:GRID:STAR?")
        spacing_ghz = _parse_float(self.query("SENS:GRID:SPAC?"), "SENS:GRID:SPAC?")
        count = parse_int(self.query("SENS:GRID:COUN?"), "SENS:GRID:COUN?")
        if count < 1 or spacing_ghz <= 0:
            raise ProtocolError(f"implausible grid: {count} ports every {spacing_ghz} GHz")
        self.port_count = count
        return PortGrid(first_thz=first_thz, spacing_ghz=spacing_ghz, count=count)

    def set_averaging(self, count: int) -> None:
        if not 1 <= count <= 64:
            raise ValueError(f"averaging must be in 1..64, got {count}")
        self.command(f"SENS:AVER {count}")

    def read_averaging(self) -> int:
        return parse_int(self.query("SENS:AVER?"), "SENS:AVER?")

    def read_temperature_c(self) -> float:
        return _parse_float(self.query("SYST:TEMP?"), "SYST:TEMP?")

    def read_status(self) -> DeviceStatus:
        return DeviceStatus(parse_int(self.query("STAT:COND?"), "STAT:COND?") & 0xF)

    def set_stream_rate(self, rate_hz: float) -> None:
        if not 0.1 <= rate_hz <= 1000:
            raise ValueError(f"stream rate must be in 0.1..1000 Hz, got {rate_hz}")
        self.command(f"STRE:RATE {rate_hz:g}")

    def read_stream_rate(self) -> float:
        return _parse_float(self.query("STRE:RATE?"), "STRE:RATE?")

    # -- measurements ---------------------------------------------------------------
    def read_powers(self) -> npt.NDArray[np.float64]:
        """One reading of every port in dBm; NaN where the device reports ``-99.99``."""
        text = self.query("MEAS:POW?")
        parts = text.split(",")
        if len(parts) != self.port_count:
            raise ProtocolError(
                f"MEAS:POW?: expected {self.port_count} values, got {len(parts)}: {text[:60]!r}"
            )
        try:
            power = np.array(parts, dtype=np.float64)
        except ValueError:
            raise ProtocolError(f"MEAS:POW?: not a list of numbers: {text[:60]!r}") from None
        power[power <= BELOW_FLOOR_DBM + 0.005] = np.nan
        return power

    def read_trace_axis(self) -> TraceAxis:
        """The trace's frequency axis and RBW (cached; ``reset`` forgets it)."""
        if self._trace_axis is None:
            start_thz = _parse_float(self.query("TRAC:STAR?"), "TRAC:STAR?")
            step_ghz = _parse_float(self.query("TRAC:STEP?"), "TRAC:STEP?")
            points = parse_int(self.query("TRAC:POIN?"), "TRAC:POIN?")
            rbw_ghz = _parse_float(self.query("TRAC:RBW?"), "TRAC:RBW?")
            if points < 1 or step_ghz <= 0 or rbw_ghz <= 0:
                raise ProtocolError(
                    f"implausible trace axis: {points} points, step {step_ghz} GHz, "
                    f"RBW {rbw_ghz} GHz"
                )
            self._trace_axis = TraceAxis(start_thz, step_ghz, points, rbw_ghz)
        return self._trace_axis

    def read_block(self) -> bytes:
        """An IEEE 488.2 definite-length block ``#<d><len><payload>`` and its LF."""
        return read_definite_block(self.transport, max_bytes=MAX_BLOCK_BYTES)

    def read_trace(self) -> Trace:
        """One scanned trace: frequency axis (THz), float32 dBm, RBW (GHz)."""
        axis = self.read_trace_axis()
        with self.transport.lock:
            self.write("MEAS:TRAC?")
            payload = self.read_block()
        if len(payload) != 4 * axis.points:
            raise ProtocolError(
                f"MEAS:TRAC?: block of {len(payload)} bytes, expected {4 * axis.points} "
                f"({axis.points} float32 points)"
            )
        power = np.frombuffer(payload, dtype="<f4").astype(np.float32)
        return Trace(axis.frequency_thz, power, axis.rbw_ghz)

    def stream(self, rate_hz: float | None = None, *, chunk_bytes: int = 4096) -> FrameStream:
        """Start the binary stream; iterate the result, close it to stop (``with`` works)."""
        if rate_hz is not None:
            self.set_stream_rate(rate_hz)
        return FrameStream(self, chunk_bytes=chunk_bytes)


class FrameStream:
    """An open binary stream: an iterator of :class:`StreamFrame` plus the parser's counters.

    The transport lock is held from ``STRE:STAR`` until :meth:`close`, so no other
    thread can interleave a query with binary frames.
    """

    def __init__(self, driver: Odpm96, *, chunk_bytes: int = 4096) -> None:
        self._driver = driver
        self._chunk_bytes = chunk_bytes
        self.parser = StreamParser(driver.port_count)
        self._pending: list[StreamFrame] = []
        self._open = True
        driver.transport.lock.acquire()
        try:
            driver.write("STRE:STAR")
        except BaseException:
            driver.transport.lock.release()
            self._open = False
            raise

    @property
    def crc_failures(self) -> int:
        return self.parser.crc_failures

    @property
    def lost_frames(self) -> int:
        return self.parser.lost_frames

    def __iter__(self) -> FrameStream:
        return self

    def __next__(self) -> StreamFrame:
        if not self._open:
            raise StopIteration
        while not self._pending:
            data = self._driver.transport.read_some(self._chunk_bytes)
            self._pending.extend(self.parser.feed(data))
            self._pending.reverse()
        return self._pending.pop()

    def next_batch(
        self,
        *,
        deadline_s: float | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> list[StreamFrame]:
        """Every frame already decodable, waiting for at least one.

        Silence ends in the transport's timeout (:class:`DeviceTimeout`).  Bytes
        that never make a valid frame (a wrong baud rate, line noise, another
        protocol) would keep every read succeeding, so ``deadline_s`` bounds the
        wait for a *valid frame*: past it, :class:`DeviceTimeout` too.
        ``should_stop`` is checked after every read: when it turns true the
        call returns what it has (possibly nothing), so a stop request is never
        stuck behind a babbling device.
        """
        if not self._open:
            return []
        out = [*reversed(self._pending)]
        self._pending.clear()
        started = time.monotonic()
        discarded = self.parser.discarded_bytes
        while not out:
            out = self.parser.feed(self._driver.transport.read_some(self._chunk_bytes))
            if out or (should_stop is not None and should_stop()):
                break
            if deadline_s is not None and time.monotonic() - started > deadline_s:
                raise DeviceTimeout(
                    f"no valid stream frame within {deadline_s:g} s "
                    f"({self.parser.discarded_bytes - discarded} bytes discarded)"
                )
        return out

    def close(self, *, drain_s: float = 0.2) -> None:
        """Send ``STRE:STOP`` and discard frames still in flight.

        If the link already failed, only the lock is released: the worker is
        about to close the transport anyway.
        """
        if not self._open:
            return
        self._open = False
        t = self._driver.transport
        try:
            t.write(b"STRE:STOP\n")
            old = t.timeout_s
            t.timeout_s = min(drain_s, old)
            deadline = time.monotonic() + max(1.0, 10 * drain_s)
            try:
                while time.monotonic() < deadline:
                    t.read_some(65536)
            except DeviceTimeout:
                pass
            finally:
                t.timeout_s = old
            t.discard_input()
        except DriverError:
            pass
        finally:
            t.lock.release()

    def __enter__(self) -> FrameStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
