"""The simulated instrument's state: settings, SCPI error queue, temperature, injected faults.

One :class:`SimulatedOdpm96` is one instrument: every connection to a
simulator server talks to the same object (as several TCP clients of a real
instrument would), so a second connection can inject a fault into the first.
The optics live in :class:`~drivers.simulator.model.OpticalModel`; the SCPI
parsing in :mod:`drivers.simulator.protocol`; the sockets in
:mod:`drivers.simulator.server`.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from drivers.simulator.model import OpticalModel

#: SCPI error queue depth (IEEE 488.2 leaves it to the device; 10 is common).
ERROR_QUEUE_DEPTH = 10
#: AWG chip temperature the TEC holds, C.
TEC_SETPOINT_C = 45.0
#: Slow drift of the chip temperature while locked: an Ornstein-Uhlenbeck
#: process of this standard deviation (C) and correlation time (s).
TEMPERATURE_DRIFT_SIGMA_C = 0.02
TEMPERATURE_DRIFT_TAU_S = 300.0
#: How far the chip wanders when the TEC unlocks, C.
TEC_UNLOCKED_OFFSET_C = 3.0

STATUS_MEASURING = 1
STATUS_TEC_UNLOCKED = 2
STATUS_LOS = 4
STATUS_OVERLOAD = 8
LOS_THRESHOLD_DBM = -40.0
OVERLOAD_THRESHOLD_DBM = 20.0


@dataclass
class FaultPlan:
    """Faults waiting to be applied to the next stream frames (device-wide)."""

    garbage_bytes: int = 0
    drop_frames: int = 0
    crc_frames: int = 0


class SimulatedOdpm96:
    """A simulated ODPM-96: optics model + instrument state, shared by all connections."""

    def __init__(
        self,
        *,
        seed: int | None = None,
        serial_number: str = "SIM00001",
        firmware: str = "1.0.0-sim",
        model: OpticalModel | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lock = threading.RLock()
        self.model = model or OpticalModel(seed=seed)
        self.rng = np.random.default_rng(None if seed is None else seed + 1)
        self.serial_number = serial_number
        self.firmware = firmware
        self.clock = clock
        self.start_time = clock()
        self.averaging = 1
        self.stream_rate_hz = 10.0
        self.baud: int | None = None
        self._errors: deque[tuple[int, str]] = deque()
        self.faults = FaultPlan()
        self.stalled_until = 0.0
        #: Incremented by each SIM:FAUL:DISC; connections drop when they see a new value.
        self.disconnect_generation = 0
        self.disconnect_after_bytes = 0
        self.tec_locked = True
        #: Sequence numbers of frames sent damaged (CRC or a dropped byte), oldest first,
        #: so tests can check that exactly these were rejected.
        self.damaged_frames: deque[int] = deque(maxlen=100_000)
        self._drift_c = 0.0
        self._drift_time = clock()

    # -- errors -------------------------------------------------------------------------
    def push_error(self, code: int, message: str) -> None:
        with self._lock:
            if len(self._errors) >= ERROR_QUEUE_DEPTH:
                self._errors[-1] = (-350, "Queue overflow")
            else:
                self._errors.append((code, message))

    def pop_error(self) -> tuple[int, str]:
        with self._lock:
            return self._errors.popleft() if self._errors else (0, "No error")

    def clear_errors(self) -> None:
        with self._lock:
            self._errors.clear()

    def reset(self) -> None:
        """``*RST``: settings to defaults (the optical scenario is the fibre's, not ours)."""
        with self._lock:
            self.averaging = 1
            self.stream_rate_hz = 10.0

    # -- temperature and status -----------------------------------------------------------
    def temperature_c(self) -> float:
        with self._lock:
            now = self.clock()
            dt = max(now - self._drift_time, 0.0)
            self._drift_time = now
            a = math.exp(-dt / TEMPERATURE_DRIFT_TAU_S)
            self._drift_c = self._drift_c * a + TEMPERATURE_DRIFT_SIGMA_C * math.sqrt(
                1 - a * a
            ) * float(self.rng.standard_normal())
            offset = 0.0 if self.tec_locked else TEC_UNLOCKED_OFFSET_C
            return TEC_SETPOINT_C + self._drift_c + offset

    def awg_shift_ghz(self) -> float:
        return (self.temperature_c() - TEC_SETPOINT_C) * self.model.awg_tempco_ghz_per_c

    def set_tec_locked(self, locked: bool) -> None:
        with self._lock:
            if self.tec_locked and not locked:
                self.push_error(101, "TEC not locked")
            self.tec_locked = locked

    def status(self, measuring: bool) -> int:
        total = self.model.total_power_dbm()
        bits = STATUS_MEASURING if measuring else 0
        if not self.tec_locked:
            bits |= STATUS_TEC_UNLOCKED
        if total < LOS_THRESHOLD_DBM:
            bits |= STATUS_LOS
        if total > OVERLOAD_THRESHOLD_DBM:
            bits |= STATUS_OVERLOAD
        return bits

    # -- measurements ---------------------------------------------------------------------
    def measure_powers_dbm(self) -> npt.NDArray[np.float64]:
        return self.model.read_port_powers_dbm(
            averaging=self.averaging, awg_shift_ghz=self.awg_shift_ghz()
        )

    def measure_trace_dbm(self) -> npt.NDArray[np.float32]:
        return self.model.read_trace_dbm(averaging=self.averaging)

    def device_time_us(self) -> int:
        return int((self.clock() - self.start_time) * 1e6)

    # -- faults ---------------------------------------------------------------------------
    def inject_garbage(self, n_bytes: int) -> None:
        if not 0 <= n_bytes <= 65536:
            raise ValueError(f"garbage must be 0..65536 bytes, got {n_bytes}")
        with self._lock:
            self.faults.garbage_bytes += n_bytes

    def inject_dropped_bytes(self, frames: int) -> None:
        """Drop one byte from each of the next ``frames`` stream frames."""
        if not 0 <= frames <= 1_000_000:
            raise ValueError(f"frame count must be 0..1000000, got {frames}")
        with self._lock:
            self.faults.drop_frames += frames

    def inject_crc_errors(self, frames: int) -> None:
        """Corrupt the CRC of the next ``frames`` stream frames."""
        if not 0 <= frames <= 1_000_000:
            raise ValueError(f"frame count must be 0..1000000, got {frames}")
        with self._lock:
            self.faults.crc_frames += frames

    def stall(self, seconds: float) -> None:
        """Go silent (no answers, no frames) for ``seconds``; input waits unread."""
        if not 0 <= seconds <= 3600:
            raise ValueError(f"stall must be 0..3600 s, got {seconds}")
        with self._lock:
            self.stalled_until = self.clock() + seconds

    def stall_remaining_s(self) -> float:
        return max(self.stalled_until - self.clock(), 0.0)

    def disconnect(self, after_bytes: int = 0) -> None:
        """Drop every open connection after each has sent ``after_bytes`` more bytes."""
        if not 0 <= after_bytes <= 100_000_000:
            raise ValueError(f"after_bytes must be 0..100000000, got {after_bytes}")
        with self._lock:
            self.disconnect_after_bytes = after_bytes
            self.disconnect_generation += 1

    def set_baud(self, baud: int | None) -> None:
        if baud is not None and not 300 <= baud <= 4_000_000:
            raise ValueError(f"baud must be 300..4000000 (or 0 for unpaced), got {baud}")
        with self._lock:
            self.baud = baud

    def take_frame_faults(self) -> tuple[int, bool, bool]:
        """(garbage bytes to send first, drop a byte?, corrupt the CRC?) for the next frame."""
        with self._lock:
            f = self.faults
            garbage, f.garbage_bytes = f.garbage_bytes, 0
            drop = f.drop_frames > 0
            crc = f.crc_frames > 0
            f.drop_frames -= int(drop)
            f.crc_frames -= int(crc)
            return garbage, drop, crc

    def record_damaged_frame(self, sequence: int) -> None:
        with self._lock:
            self.damaged_frames.append(sequence)

    def take_idle_garbage(self) -> int:
        """Garbage requested while not streaming goes out at once, as line noise would."""
        with self._lock:
            garbage, self.faults.garbage_bytes = self.faults.garbage_bytes, 0
            return garbage

    def garbage(self, n_bytes: int) -> bytes:
        with self._lock:
            return self.rng.integers(0, 256, n_bytes, dtype=np.uint8).tobytes()
