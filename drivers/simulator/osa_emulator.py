"""What the bench OSA emulators (AQ6370, MS9740) share: spectrum, state, faults, TCP server.

An emulator is one instrument: a :class:`SimulatedOdpm96` underneath supplies
the optical line (its :class:`OpticalModel`), the SCPI error queue, the
whole-device stall and disconnect faults, and answers every ``SIM:...`` command
exactly as the ODPM-96 simulator does (``SIM:TRUTh:OSNR?`` and friends), so a
test can shape the line and read the ground truth through any instrument.

Spectrum.  The OSA sweeps uniformly in wavelength (in its display medium, air
or vacuum).  Each point is the model's RBW-filtered spectrum
(:meth:`OpticalModel.read_trace_dbm`, reading noise included) interpolated in
linear power to that point's vacuum frequency; the reported resolution is the
model's RBW expressed in nm at the sweep's centre.

Faults (in process, or by ``SIM:FAULt:...`` on the wire): a stall in the
middle of the next binary block, a truncated next block (the header promises
more bytes than are sent), an error queued during the next sweep, a refused login, a
sweep that never completes; plus the simulator's own ``SIM:FAULt:STALl`` and
``SIM:FAULt:DISConnect``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

import numpy as np
import numpy.typing as npt

from drivers.ieee488 import encode_definite_block
from drivers.simulator.device import SimulatedOdpm96
from drivers.simulator.protocol import ScpiSession, header_spellings
from odpm.air import air_to_vacuum_nm, vacuum_to_air_nm
from odpm.grid import frequency_thz_to_wavelength_nm, wavelength_nm_to_frequency_thz
from odpm.units import dbm_to_mw, mw_to_dbm

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
#: Longest command line accepted (a line this long without LF is discarded).
MAX_COMMAND_BYTES = 4096
_POLL_S = 0.05
#: How long a reply may take to leave (a stalled client is dropped after this), s.
SEND_TIMEOUT_S = 30.0


class EmulatorError(Exception):
    """A command failed: queued as ``code,"message"``, answered with silence."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code},{message}")
        self.code = code
        self.message = message


@dataclass
class OsaFaults:
    """Faults waiting to hit the next block / login / sweep (instrument-wide)."""

    block_stall_s: float = 0.0
    block_truncate_bytes: int = 0
    refuse_login: bool = False
    hang_sweep: bool = False
    sweep_error: tuple[int, str] | None = None


class Session:
    """One connection's state (login progress); everything else is the instrument's."""

    def __init__(self, emulator: OsaEmulator) -> None:
        self.emulator = emulator
        self.authenticated = not emulator.requires_login
        self.login_user: str | None = None
        self.scpi = ScpiSession(emulator.device)


Handler = Callable[[Session, list[str]], "bytes | str | None"]


class OsaEmulator:
    """Base of the AQ6370 and MS9740 emulators: register commands in :meth:`_register`."""

    #: Reply terminator (the AQ6370 ends replies with CR LF).
    terminator = b"\n"
    requires_login = False

    def __init__(
        self,
        *,
        seed: int | None = None,
        device: SimulatedOdpm96 | None = None,
        points: int = 10001,
        sweep_time_s: float = 0.1,
    ) -> None:
        self.device = device or SimulatedOdpm96(seed=seed)
        self.model = self.device.model
        self._lock = threading.RLock()
        f = self.model.trace_frequency_thz()
        lo_nm = float(frequency_thz_to_wavelength_nm(f.max()))
        hi_nm = float(frequency_thz_to_wavelength_nm(f.min()))
        #: Sweep span in *vacuum* nm: inside the model's trace, on a 0.01 nm grid.
        self.start_vac_nm = math.ceil((lo_nm + 0.01) * 100) / 100
        self.stop_vac_nm = math.floor((hi_nm - 0.01) * 100) / 100
        self.points = points
        self.medium = "vacuum"
        self.binary = False
        self.averaging = 1
        self.sweep_time_s = sweep_time_s
        self.faults = OsaFaults()
        self._sweep_started: float | None = None
        self._sweep_hung = False
        self.sweeps_completed = 0
        self.wavelength_nm: FloatArray = np.zeros(0)
        self.level_dbm: FloatArray = np.zeros(0)
        self._commands: dict[str, Handler] = {}
        self._register()

    # -- command table -------------------------------------------------------------------
    def _register(self) -> None:
        raise NotImplementedError

    def add(self, handler: Handler, *patterns: str) -> None:
        for pattern in patterns:
            for spelling in header_spellings(pattern):
                self._commands[spelling] = handler

    def handle_line(self, session: Session, line: bytes) -> bytes:
        """One command line -> the reply bytes with terminator (``b""`` when silent)."""
        try:
            text = line.decode("ascii").strip()
        except UnicodeDecodeError:
            self.device.push_error(-101, "Invalid character")
            return b""
        if not session.authenticated:
            return self._login_step(session, text)
        answers: list[bytes] = []
        for part in text.split(";"):
            part = part.strip()
            if not part:
                continue
            answer = self._execute(session, part)
            if answer is not None:
                answers.append(answer.encode("ascii") if isinstance(answer, str) else answer)
        if not answers:
            return b""
        joined = b";".join(answers)
        return joined if joined.endswith(self.terminator) else joined + self.terminator

    def _login_step(self, session: Session, text: str) -> bytes:
        raise NotImplementedError

    def _execute(self, session: Session, text: str) -> bytes | str | None:
        header, _, rest = text.partition(" ")
        key = header.strip().upper().lstrip(":")
        if key.startswith(("SIM:", "SIMULATION:")):
            handler = self._commands.get(key)
            if handler is None:  # the ODPM-96 simulator's SIM commands, verbatim
                reply = session.scpi.handle_line(text.encode("ascii"))
                return reply.rstrip(b"\n") or None
        else:
            handler = self._commands.get(key)
        if handler is None:
            self.device.push_error(-113, "Undefined header")
            return None
        args = [a.strip() for a in rest.split(",")] if rest.strip() else []
        try:
            return handler(session, args)
        except EmulatorError as exc:
            self.device.push_error(exc.code, exc.message)
        except ValueError as exc:
            self.device.push_error(-222, f"Data out of range;{exc}")
        return None

    # -- sweep --------------------------------------------------------------------------------
    def axis_nm(self) -> tuple[FloatArray, FloatArray]:
        """(wavelengths as displayed, in the medium; the same points in vacuum), nm."""
        if self.medium == "vacuum":
            vac = np.linspace(self.start_vac_nm, self.stop_vac_nm, self.points)
            return vac, vac
        start, stop = vacuum_to_air_nm(np.array([self.start_vac_nm, self.stop_vac_nm]))
        shown = np.linspace(float(start), float(stop), self.points)
        return shown, air_to_vacuum_nm(shown)

    def rbw_nm(self) -> float:
        centre = 0.5 * (self.start_vac_nm + self.stop_vac_nm)
        rbw_ghz = self.model.rbw_ghz
        return rbw_ghz / float(wavelength_nm_to_frequency_thz(centre) * 1000.0) * centre

    def start_sweep(self) -> None:
        """Sample the line now; the sweep reports complete ``sweep_time_s`` later."""
        with self._lock:
            shown, vac = self.axis_nm()
            model_f = self.model.trace_frequency_thz()
            mw = dbm_to_mw(self.model.read_trace_dbm(averaging=self.averaging))
            f = wavelength_nm_to_frequency_thz(vac)
            self.wavelength_nm = shown
            self.level_dbm = mw_to_dbm(np.interp(f, model_f, mw))
            self._sweep_started = time.monotonic()
            self._sweep_hung = self.faults.hang_sweep
            error, self.faults.sweep_error = self.faults.sweep_error, None
        if error is not None:
            self.device.push_error(*error)

    def take_sweep_complete(self) -> bool:
        """True once per finished sweep (an event register bit clears when read)."""
        with self._lock:
            if self._sweep_started is None or self._sweep_hung:
                return False
            if time.monotonic() - self._sweep_started < self.sweep_time_s:
                return False
            self._sweep_started = None
            self.sweeps_completed += 1
            return True

    # -- formatting ---------------------------------------------------------------------------
    def values_reply(self, values: FloatArray, *, separator: str = ",") -> bytes:
        """Values as a REAL,64 block (with faults applied) or as exact ASCII numbers."""
        if self.binary:
            return self.block(np.asarray(values, dtype="<f8").tobytes())
        text = separator.join(repr(v) for v in np.asarray(values, dtype=np.float64).tolist())
        return text.encode("ascii") + self.terminator

    def block(self, payload: bytes) -> bytes:
        data = encode_definite_block(payload, self.terminator)
        with self._lock:
            cut, self.faults.block_truncate_bytes = self.faults.block_truncate_bytes, 0
        if cut:
            body_end = len(data) - len(self.terminator)
            data = data[: max(body_end - cut, 0)] + self.terminator
        return data

    def take_block_stall_s(self) -> float:
        with self._lock:
            stall, self.faults.block_stall_s = self.faults.block_stall_s, 0.0
            return stall

    # -- faults (in process; also SIM:FAULt:... on the wire) ------------------------------------
    def inject_block_stall(self, seconds: float) -> None:
        if not 0 <= seconds <= 3600:
            raise ValueError(f"stall must be 0..3600 s, got {seconds}")
        self.faults.block_stall_s = seconds

    def inject_truncated_block(self, missing_bytes: int) -> None:
        if not 0 <= missing_bytes <= 1_000_000:
            raise ValueError(f"missing bytes must be 0..1000000, got {missing_bytes}")
        self.faults.block_truncate_bytes = missing_bytes

    def inject_error(self, code: int, message: str = "Simulated instrument error") -> None:
        """Queue ``code`` during the next sweep (after the ``*CLS`` that starts it)."""
        with self._lock:
            self.faults.sweep_error = (code, message)

    def refuse_login(self, refuse: bool = True) -> None:
        self.faults.refuse_login = refuse

    def hang_sweep(self, hang: bool = True) -> None:
        self.faults.hang_sweep = hang
        if not hang:
            self._sweep_hung = False

    def _register_faults(self) -> None:
        def block_stall(s: Session, args: list[str]) -> None:
            self.inject_block_stall(float(_arg(args, 0)))

        def truncate(s: Session, args: list[str]) -> None:
            self.inject_truncated_block(int(_arg(args, 0)))

        def error(s: Session, args: list[str]) -> None:
            self.inject_error(int(_arg(args, 0)))

        def login(s: Session, args: list[str]) -> None:
            self.refuse_login(_arg(args, 0).upper() in ("1", "ON"))

        def hang(s: Session, args: list[str]) -> None:
            self.hang_sweep(_arg(args, 0).upper() in ("1", "ON"))

        def sweep_time(s: Session, args: list[str]) -> None:
            value = float(_arg(args, 0))
            if not 0 <= value <= 600:
                raise ValueError("sweep time must be 0..600 s")
            self.sweep_time_s = value

        self.add(block_stall, "SIMulation:FAULt:BLOCk:STALl")
        self.add(truncate, "SIMulation:FAULt:BLOCk:TRUNcate")
        self.add(error, "SIMulation:FAULt:ERRor")
        self.add(login, "SIMulation:FAULt:LOGin")
        self.add(hang, "SIMulation:FAULt:SWEep:HANG")
        self.add(sweep_time, "SIMulation:SWEep:TIME")


def _arg(args: list[str], i: int) -> str:
    if i >= len(args):
        raise EmulatorError(-109, "Missing parameter")
    return args[i]


def number_arg(args: list[str], i: int, lo: float, hi: float) -> float:
    try:
        value = float(_arg(args, i))
    except ValueError:
        raise EmulatorError(-104, f"Data type error;{args[i]}") from None
    if not (math.isfinite(value) and lo <= value <= hi):
        raise EmulatorError(-222, f"Data out of range;must be {lo:g}..{hi:g}")
    return value


class OsaServer:
    """An emulator on a TCP port, one thread per connection; ``close()`` frees everything."""

    def __init__(self, emulator: OsaEmulator, host: str = "127.0.0.1", port: int = 0) -> None:
        self.emulator = emulator
        self.stop_event = threading.Event()
        self._threads: list[threading.Thread] = []
        self._listener = socket.create_server((host, port))
        self._listener.settimeout(_POLL_S)
        self.host, self.port = self._listener.getsockname()[:2]
        self.address = f"socket://{self.host}:{self.port}"
        self._spawn(self._accept_loop, "osa-emulator-accept")

    @property
    def visa_address(self) -> str:
        return f"TCPIP::{self.host}::{self.port}::SOCKET"

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        self._threads = [x for x in self._threads if x.is_alive()]
        self._threads.append(t)
        t.start()

    def _accept_loop(self) -> None:
        while not self.stop_event.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._spawn(lambda c=conn: self._serve(c), "osa-emulator-conn")  # type: ignore[misc]

    def _serve(self, conn: socket.socket) -> None:
        em = self.emulator
        device = em.device
        session = Session(em)
        generation = device.disconnect_generation
        buf = bytearray()
        conn.settimeout(_POLL_S)
        with conn:
            try:
                while not self.stop_event.is_set():
                    if device.disconnect_generation != generation:
                        return
                    if device.stall_remaining_s() > 0:
                        self.stop_event.wait(min(device.stall_remaining_s(), _POLL_S))
                        continue
                    i = buf.find(b"\n")
                    if i < 0:
                        if len(buf) > MAX_COMMAND_BYTES:
                            buf.clear()
                            device.push_error(-223, "Too much data")
                        try:
                            data = conn.recv(65536)
                        except TimeoutError:
                            continue
                        if not data:
                            return
                        buf += data
                        continue
                    line = bytes(buf[:i]).rstrip(b"\r")
                    del buf[: i + 1]
                    reply = em.handle_line(session, line)
                    if reply:
                        self._send(conn, reply)
            except OSError as exc:
                log.debug("emulator connection closed: %s", exc)

    def _send(self, conn: socket.socket, reply: bytes) -> None:
        """Send a reply; a client may take a while to drain 400 kB of ASCII, so sends get
        :data:`SEND_TIMEOUT_S` (the short poll timeout is for reads)."""
        stall = self.emulator.take_block_stall_s() if reply.startswith(b"#") else 0.0
        conn.settimeout(SEND_TIMEOUT_S)
        try:
            if stall > 0:
                half = len(reply) // 2
                conn.sendall(reply[:half])
                if self.stop_event.wait(stall):
                    return
                reply = reply[half:]
            conn.sendall(reply)
        finally:
            conn.settimeout(_POLL_S)

    def close(self, timeout_s: float = 5.0) -> None:
        if self.stop_event.is_set():
            return
        self.stop_event.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        deadline = time.monotonic() + timeout_s
        for t in self._threads:
            t.join(max(deadline - time.monotonic(), 0.0))

    def __enter__(self) -> OsaServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"OsaServer({type(self.emulator).__name__}, {self.address!r})"
