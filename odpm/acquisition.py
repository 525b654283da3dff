"""The acquisition worker: one thread per device, scanning forever and surviving the link.

The worker owns the device connection.  It connects, identifies the device,
applies the settings, then scans in the configured mode (``power``: MEAS:POW?
every ``interval_s``; ``trace``: MEAS:TRAC?; ``stream``: consume binary
frames) and hands each raw scan, stamped with the host's UTC time, to
``on_scan``.

On any driver or OS error it closes the transport (so no socket or fd
outlives a failure), waits an exponential backoff with full jitter (a random
delay in ``[0, min(cap, base * 2^attempt)]``, which spreads out the reconnects
of many workers that lost the same network; AWS Architecture Blog,
"Exponential Backoff And Jitter", 2015), reconnects and resumes.  Drivers
never retry; this is the one place that does.

Every change of settings and every on-demand scan runs on the worker thread
(posted through a queue), so the driver is only ever used from one thread.
"""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Literal

from drivers.errors import DriverError, Interrupted
from drivers.odpm96 import FrameStream
from drivers.registry import Interruptible, MonitorDriver, check_mode, open_driver
from drivers.stream import DEVICE_TIME_MODULUS
from odpm.config import DeviceConfig
from odpm.grid import PortGrid
from odpm.instrument_analysis import read_instrument_analysis
from odpm.models import Mode, PortScan, RawScan, TraceScan

log = logging.getLogger(__name__)

WorkerState = Literal["connecting", "running", "backoff", "paused", "stopped"]
_MODES = ("power", "trace", "stream")


@dataclass(frozen=True, slots=True)
class WorkerCounters:
    """Totals since the worker started."""

    scans: int = 0
    #: Connection/driver failures (each led to a close and a backoff).
    errors: int = 0
    #: Successful connections after the first.
    reconnects: int = 0
    crc_failures: int = 0
    lost_frames: int = 0
    #: Exceptions raised by ``on_scan`` (logged; the worker carries on).
    callback_errors: int = 0


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """Exponential backoff with full jitter: delay ~ U(0, min(cap_s, base_s * 2**attempt))."""

    base_s: float = 0.2
    cap_s: float = 10.0

    def __post_init__(self) -> None:
        if not 0 < self.base_s <= self.cap_s:
            raise ValueError(f"backoff needs 0 < base_s <= cap_s, got {self.base_s}, {self.cap_s}")

    def delay_s(self, attempt: int, rng: random.Random) -> float:
        ceiling = min(self.cap_s, self.base_s * 2.0 ** min(attempt, 60))
        return rng.uniform(0.0, ceiling)


#: A stream that delivers no valid frame for this many frame intervals...
FRAME_DEADLINE_FRAMES = 10
#: ...(but at least this long) is a DeviceTimeout: counted, then a reconnect.
MIN_FRAME_DEADLINE_S = 1.0


def frame_deadline_s(rate_hz: float) -> float:
    """How long the stream reader waits for a valid frame before giving up on the link."""
    return max(MIN_FRAME_DEADLINE_S, FRAME_DEADLINE_FRAMES / rate_hz)


class _RepeatedError:
    """Decides which reconnect failures are logged: a new error text always; the same
    one again only on each step of the backoff (attempts 1, 2, 4, 8, ...: where the
    backoff ceiling doubles, then ever more rarely at the cap), with how many times it
    happened since it was last logged.  A monitor unplugged for an hour then logs a
    dozen lines, not one per retry.
    """

    def __init__(self) -> None:
        self._text: str | None = None
        self._since_logged = 0

    def note(self, text: str, attempt: int) -> int | None:
        """Count one failure; the repeat count to log now, or None to stay quiet."""
        if text != self._text:
            self._text = text
            self._since_logged = 0
            return 1
        self._since_logged += 1
        if attempt & (attempt - 1) == 0:  # 0, 1, 2, 4, 8, ...
            seen, self._since_logged = self._since_logged, 0
            return seen
        return None


def default_connect(device: DeviceConfig) -> MonitorDriver:
    """Open the configured transport and wrap it in the configured driver (``driver = ...``)."""
    return open_driver(
        device.driver,
        device.address,
        kind=device.transport,
        baudrate=device.baudrate,
        timeout_s=device.timeout_s,
        username=device.username,
        password=device.resolved_password(),
        trace_format=device.trace_format,
        medium=device.wavelength_medium,
    )


@dataclass
class _Settings:
    mode: Mode
    interval_s: float
    averaging: int
    running: bool
    stream_rate_hz: float


_Command = Callable[[], None]


@dataclass
class _ScanRequest:
    mode: Mode | None
    future: concurrent.futures.Future[RawScan]


class AcquisitionWorker:
    """Acquires from one device on its own thread; see the module docstring."""

    def __init__(
        self,
        device: DeviceConfig,
        on_scan: Callable[[RawScan], None],
        *,
        connect: Callable[[DeviceConfig], MonitorDriver] | None = None,
        backoff: BackoffPolicy | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.device = device
        self._on_scan = on_scan
        self._connect = connect or default_connect
        self._backoff = backoff or BackoffPolicy()
        self._rng = rng or random.Random()
        self._settings = _Settings(
            mode=device.mode,
            interval_s=device.interval_s,
            averaging=device.averaging,
            running=device.enabled,
            stream_rate_hz=device.stream_rate_hz,
        )
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._commands: queue.SimpleQueue[_Command] = queue.SimpleQueue()
        self._requests: queue.SimpleQueue[_ScanRequest] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._driver: MonitorDriver | None = None
        self._grid: PortGrid | None = None
        self._connected_once = False
        self._state: WorkerState = "stopped"
        self._counters = WorkerCounters()
        self._identity: str | None = None
        self._last_error: str | None = None
        self._last_error_at: datetime | None = None
        self._last_scan_time: datetime | None = None
        self._temperature_c: float | None = None
        self._scanned_since_open = False

    # -- public, thread-safe ------------------------------------------------------------------
    @property
    def state(self) -> WorkerState:
        return self._state

    @property
    def counters(self) -> WorkerCounters:
        with self._lock:
            return self._counters

    @property
    def identity(self) -> str | None:
        return self._identity

    @property
    def last_error(self) -> str | None:
        return self._last_error

    @property
    def last_error_at(self) -> datetime | None:
        """When the last error happened (kept after a reconnect clears ``last_error``)."""
        return self._last_error_at

    @property
    def last_scan_time(self) -> datetime | None:
        return self._last_scan_time

    @property
    def mode(self) -> Mode:
        return self._settings.mode

    @property
    def interval_s(self) -> float:
        return self._settings.interval_s

    @property
    def averaging(self) -> int:
        return self._settings.averaging

    @property
    def running(self) -> bool:
        return self._settings.running

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"worker for {self.device.id} was already started")
        self._state = "connecting"
        self._thread = threading.Thread(
            target=self._run, name=f"odpm-acq-{self.device.id}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> bool:
        """Ask the thread to finish and wait up to ``timeout_s``; True if it has.

        Returns within ``timeout_s`` even while a read is blocked on a stalled
        device: the thread then finishes by itself within the transport timeout.
        """
        self._stop.set()
        self._wake.set()
        if self._thread is None:
            self._state = "stopped"
            return True
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def reconfigure(
        self,
        *,
        mode: Mode | None = None,
        interval_s: float | None = None,
        averaging: int | None = None,
        running: bool | None = None,
        stream_rate_hz: float | None = None,
    ) -> None:
        """Change settings; validated here, applied on the worker thread."""
        if mode is not None and mode not in _MODES:
            raise ValueError(f"mode must be one of {', '.join(_MODES)}, got {mode!r}")
        if mode is not None:
            check_mode(self.device.driver, mode)
        if interval_s is not None and not 0 <= interval_s <= 86400:
            raise ValueError(f"interval_s must be in 0..86400, got {interval_s}")
        if averaging is not None and not 1 <= averaging <= 64:
            raise ValueError(f"averaging must be in 1..64, got {averaging}")
        if stream_rate_hz is not None and not 0.1 <= stream_rate_hz <= 1000:
            raise ValueError(f"stream_rate_hz must be in 0.1..1000, got {stream_rate_hz}")

        def apply() -> None:
            s = self._settings
            if averaging is not None and averaging != s.averaging and self._driver is not None:
                self._driver.set_averaging(averaging)
            self._settings = replace(
                s,
                mode=mode if mode is not None else s.mode,
                interval_s=interval_s if interval_s is not None else s.interval_s,
                averaging=averaging if averaging is not None else s.averaging,
                running=running if running is not None else s.running,
                stream_rate_hz=stream_rate_hz if stream_rate_hz is not None else s.stream_rate_hz,
            )

        self._commands.put(apply)
        self._wake.set()

    def request_scan(self, mode: Mode | None = None) -> concurrent.futures.Future[RawScan]:
        """One scan now (``power`` or ``trace``; default: the configured mode, power
        when streaming), run on the worker thread.  The scan also goes to ``on_scan``.
        """
        if mode is not None and mode not in ("power", "trace"):
            raise ValueError(f"an on-demand scan is power or trace, got {mode!r}")
        if mode is not None:
            check_mode(self.device.driver, mode)
        future: concurrent.futures.Future[RawScan] = concurrent.futures.Future()
        if self._stop.is_set():
            future.set_exception(RuntimeError(f"worker for {self.device.id} is stopped"))
            return future
        self._requests.put(_ScanRequest(mode, future))
        self._wake.set()
        return future

    # -- worker thread ----------------------------------------------------------------------------
    def _count(self, **delta: int) -> None:
        with self._lock:
            c = self._counters
            self._counters = replace(c, **{k: getattr(c, k) + v for k, v in delta.items()})

    def _run(self) -> None:
        attempt = 0
        repeats = _RepeatedError()
        try:
            while not self._stop.is_set():
                try:
                    self._apply_commands()
                    if self._driver is None:
                        if not self._settings.running and self._requests.empty():
                            self._state = "paused"
                            self._wait(None)
                            continue
                        self._state = "connecting"
                        self._open()
                    self._serve()
                except Exception as exc:
                    if isinstance(exc, Interrupted) and self._stop.is_set():
                        break  # stopping cut a sweep short: not a fault of the device
                    # DriverError/OSError are the expected failures; anything else (a
                    # library bug, select() on fd > 1024, ...) is logged with its traceback
                    # but handled the same way: the worker must survive it.
                    if not isinstance(exc, DriverError | OSError):
                        log.exception("%s: unexpected error in acquisition", self.device.id)
                    if self._scanned_since_open:
                        attempt = 0  # the link worked for a while: start the backoff afresh
                    # Cleared here, not only on a successful open: a failed open must not
                    # leave it set, or every retry would start the backoff afresh again.
                    self._scanned_since_open = False
                    self._fail(exc)
                    if self._stop.is_set():
                        break
                    delay = self._backoff.delay_s(attempt, self._rng)
                    self._state = "backoff"
                    assert self._last_error is not None
                    seen = repeats.note(self._last_error, attempt)
                    if seen is not None:
                        log.warning(
                            "%s: %s%s; reconnecting in %.2f s",
                            self.device.id,
                            self._last_error,
                            f" ({seen} times since the last report)" if seen > 1 else "",
                            delay,
                        )
                    attempt += 1
                    self._stop.wait(delay)
        finally:
            self._close()
            self._fail_requests(RuntimeError(f"worker for {self.device.id} stopped"))
            self._state = "stopped"

    def _wait(self, timeout_s: float | None) -> None:
        self._wake.wait(timeout_s)
        self._wake.clear()

    def _open(self) -> None:
        driver = self._connect(self.device)
        self._driver = driver
        if isinstance(driver, Interruptible):
            driver.set_stop_check(self._stop.is_set)
        self._scanned_since_open = False
        self._identity = driver.identify()
        # Bench OSAs have no ports (drivers.registry): their grid stays None.
        self._grid = driver.read_port_grid() if "power" in driver.modes else None
        driver.set_averaging(self._settings.averaging)
        if self._connected_once:
            self._count(reconnects=1)
        self._connected_once = True
        log.info("%s: connected to %s", self.device.id, self._identity)

    def _close(self) -> None:
        driver, self._driver = self._driver, None
        if driver is not None:
            try:
                driver.close()
            except Exception:
                log.exception("%s: closing the transport failed", self.device.id)

    def _fail(self, exc: BaseException) -> None:
        self._last_error = f"{type(exc).__name__}: {exc}"
        self._last_error_at = datetime.now(UTC)
        self._count(errors=1)
        self._close()
        self._fail_requests(exc)

    def _fail_requests(self, exc: BaseException) -> None:
        while True:
            try:
                req = self._requests.get_nowait()
            except queue.Empty:
                return
            if not req.future.done():
                req.future.set_exception(exc)

    def _apply_commands(self) -> None:
        while True:
            try:
                cmd = self._commands.get_nowait()
            except queue.Empty:
                return
            cmd()

    def _serve(self) -> None:
        """Scan in the configured mode until stopped; driver failures propagate."""
        next_due = time.monotonic()
        while not self._stop.is_set():
            self._apply_commands()
            self._serve_requests()
            s = self._settings
            if not s.running:
                self._state = "paused"
                self._wait(None)
                continue
            self._state = "running"
            if s.mode == "stream":
                self._stream(s.stream_rate_hz)
                continue
            now = time.monotonic()
            if now >= next_due:
                self._deliver(self._scan(s.mode))
                # Fixed rate while we keep up; no burst of catch-up scans after a stall.
                next_due = max(next_due + s.interval_s, time.monotonic())
            self._wait(max(next_due - time.monotonic(), 0.0))

    def _serve_requests(self) -> None:
        while True:
            try:
                req = self._requests.get_nowait()
            except queue.Empty:
                return
            if not req.future.set_running_or_notify_cancel():
                continue
            mode = req.mode or ("power" if self._settings.mode == "stream" else self._settings.mode)
            try:
                scan = self._scan(mode)
            except BaseException as exc:
                req.future.set_exception(exc)
                raise
            self._deliver(scan)
            req.future.set_result(scan)

    def _scan(self, mode: Mode) -> RawScan:
        driver = self._driver
        assert driver is not None
        temperature_c = driver.read_temperature_c()
        self._temperature_c = temperature_c
        time_utc = datetime.now(UTC)
        if mode == "trace":
            trace = driver.read_trace()
            instrument = (
                read_instrument_analysis(driver) if self.device.instrument_analysis else None
            )
            return TraceScan(
                device_id=self.device.id,
                time=time_utc,
                frequency_thz=trace.frequency_thz,
                power_dbm=trace.power_dbm,
                rbw_ghz=trace.rbw_ghz,
                temperature_c=temperature_c,
                instrument=instrument,
            )
        assert self._grid is not None
        return PortScan(
            device_id=self.device.id,
            time=time_utc,
            power_dbm=driver.read_powers(),
            port_frequency_thz=self._grid.frequencies_thz,
            temperature_c=temperature_c,
            mode="power",
        )

    def _stream(self, rate_hz: float) -> None:
        """Consume frames until a command, a request or stop arrives.

        Frames come in batches (whatever one read delivered); each frame's host
        time is the batch's arrival time minus its device-clock lag behind the
        batch's last frame, so timestamps keep the device's spacing.
        """
        driver = self._driver
        assert driver is not None and self._grid is not None
        self._temperature_c = driver.read_temperature_c()
        port_thz = self._grid.frequencies_thz
        crc_seen = lost_seen = 0
        stream: FrameStream = driver.stream(rate_hz)
        try:
            with stream:
                while not self._stop.is_set() and not self._wake.is_set():
                    frames = stream.next_batch(
                        deadline_s=frame_deadline_s(rate_hz), should_stop=self._interrupted
                    )
                    if not frames:
                        continue  # stop or wake: the loop condition ends it
                    now = datetime.now(UTC)
                    crc, lost = stream.crc_failures, stream.lost_frames
                    if crc != crc_seen or lost != lost_seen:
                        self._count(crc_failures=crc - crc_seen, lost_frames=lost - lost_seen)
                        crc_seen, lost_seen = crc, lost
                    last_us = frames[-1].device_time_us
                    for frame in frames:
                        lag_us = (last_us - frame.device_time_us) % DEVICE_TIME_MODULUS
                        self._deliver(
                            PortScan(
                                device_id=self.device.id,
                                time=now - timedelta(microseconds=lag_us),
                                power_dbm=frame.power_dbm,
                                port_frequency_thz=port_thz,
                                temperature_c=self._temperature_c,
                                mode="stream",
                            )
                        )
        finally:
            crc, lost = stream.crc_failures, stream.lost_frames
            if crc != crc_seen or lost != lost_seen:
                self._count(crc_failures=crc - crc_seen, lost_frames=lost - lost_seen)
        self._wake.clear()

    def _interrupted(self) -> bool:
        """A stop, a command or a request is waiting (the stream reader checks this)."""
        return self._stop.is_set() or self._wake.is_set()

    def _deliver(self, scan: RawScan) -> None:
        self._count(scans=1)
        if not self._scanned_since_open:
            # The device works again: the error is history (``last_error_at`` and the
            # ``errors`` counter keep it).  Cleared on the first scan, not on connect: a
            # link that opens and then delivers nothing (a stream of garbage, a hung
            # sweep) still has its error to show.
            self._last_error = None
        self._scanned_since_open = True
        self._last_scan_time = scan.time
        try:
            self._on_scan(scan)
        except Exception:
            self._count(callback_errors=1)
            log.exception("%s: on_scan failed for a %s scan", self.device.id, scan.mode)
