"""Driver for the Anritsu MS9740A/B bench OSA.

Command set (tested against our emulator; docs/instruments.md lists it):

* A real MS9740 is reached by VXI-11 (``TCPIP::host::inst0::INSTR``, pyvisa-py
  speaks it) or GPIB through VISA; our emulator serves the same commands on a
  raw socket (``socket://host:port``), which the driver also accepts.
* A single sweep is ``*CLS`` then ``SSI``; it is complete when bit 0 of the
  end-event status register ``ESR2?`` is set.  The poll is bounded by
  :func:`sweep_timeout_s` (points and averaging), so a wedged sweep is an error.
* ``DCA?`` gives the axis (start nm, stop nm, points); ``DMA?`` the levels in
  dBm as ASCII (one per line, as the instrument sends them), or, for binary,
  ``:FORMat REAL`` then ``:TRACe:DATA:Y? TRA`` (an IEEE 488.2 block; float64,
  or float32 when its length says so).  ``RES?`` is the resolution in nm.
* Errors are read from ``:SYSTem:ERRor?`` after every setting and sweep.
* The MS9740 reports vacuum wavelengths unless set otherwise; our tested command
  set has no air/vacuum query for it, so the medium is a setting
  (``wavelength_medium`` in the device config, vacuum by default).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt

from drivers.errors import ProtocolError
from drivers.odpm96 import Trace
from drivers.osa import (
    ScpiOsa,
    WavelengthMedium,
    parse_integer,
    parse_number,
    parse_real_block,
    trace_from_wavelengths,
)
from drivers.transport import Transport

#: Upper bound of one sweep per 1001 points (the MS9740A sweeps 100 nm in ~0.2 s at
#: normal sensitivity; high sensitivity and video-bandwidth settings are slower).
_SWEEP_S_PER_1001_POINTS = 5.0
SWEEP_TIMEOUT_MARGIN_S = 5.0
#: Largest trace the MS9740 takes (``MPT``: 51..50001 points).
MAX_POINTS = 50001

TraceFormat = Literal["binary", "ascii"]


def sweep_timeout_s(points: int, averaging: int, margin_s: float = SWEEP_TIMEOUT_MARGIN_S) -> float:
    """How long a single sweep may take before it is an error."""
    return margin_s + _SWEEP_S_PER_1001_POINTS * max(points, 1001) / 1001 * max(averaging, 1)


class Ms9740(ScpiOsa):
    """One MS9740A/B on ``transport``."""

    model_name = "MS9740"
    terminator = b"\n"

    def __init__(
        self,
        transport: Transport,
        *,
        trace_format: TraceFormat = "binary",
        medium: WavelengthMedium = "vacuum",
        poll_s: float = 0.05,
        sweep_margin_s: float = SWEEP_TIMEOUT_MARGIN_S,
    ) -> None:
        super().__init__(transport, poll_s=poll_s)
        self.sweep_margin_s = sweep_margin_s
        self.trace_format: TraceFormat = trace_format
        self.medium: WavelengthMedium = medium
        self.averaging = 1
        self.last_sweep_timeout_s = 0.0

    def identify(self) -> str:
        """The ``*IDN?`` answer; ProtocolError unless it names an Anritsu MS9740."""
        idn = self.identify_as("ANRITSU", "MS9740", "an Anritsu MS9740")
        if self.trace_format == "binary":
            self.command(":FORMat REAL")
        else:
            self.command(":FORMat ASCii")
        return idn

    def set_averaging(self, count: int) -> None:
        """Sweep averaging (``AVS``)."""
        if not 1 <= count <= 1000:
            raise ValueError(f"averaging must be in 1..1000, got {count}")
        self.command(f"AVS {count}")
        self.averaging = count

    def read_axis(self) -> tuple[float, float, int]:
        """``DCA?``: (start nm, stop nm, points)."""
        text = self.query("DCA?")
        parts = text.split(",")
        if len(parts) != 3:
            raise ProtocolError(f"DCA?: expected start,stop,points, got {text[:60]!r}")
        start = parse_number(parts[0], "DCA? start")
        stop = parse_number(parts[1], "DCA? stop")
        points = parse_integer(parts[2], "DCA? points")
        if not (0 < start < stop and 2 <= points <= MAX_POINTS):
            raise ProtocolError(f"DCA?: implausible axis {text[:60]!r}")
        return start, stop, points

    def read_rbw_nm(self) -> float:
        rbw = parse_number(self.query("RES?"), "RES?")
        if not 0 < rbw <= 10:
            raise ProtocolError(f"RES?: implausible resolution {rbw} nm")
        return rbw

    def sweep(self, points: int) -> None:
        timeout = sweep_timeout_s(points, self.averaging, self.sweep_margin_s)
        self.last_sweep_timeout_s = timeout
        with self.transport.lock:
            self.write("*CLS")
            self.write("SSI")

            def complete() -> bool:
                return bool(parse_integer(self.query("ESR2?"), "ESR2?") & 1)

            self.poll_until(complete, timeout, "MS9740 sweep")
        self.check_errors("SSI")

    def read_levels(self, points: int) -> npt.NDArray[np.float64]:
        if self.trace_format == "binary":
            command = ":TRACe:DATA:Y? TRA"
            return parse_real_block(self.query_block(command), points, command)
        with self.transport.lock:
            self.write("DMA?")
            lines = [self.read_text("DMA?") for _ in range(points)]
        try:
            return np.array(lines, dtype=np.float64)
        except ValueError:
            raise ProtocolError(f"DMA?: not a list of numbers: {lines[:3]!r}") from None

    def read_trace(self) -> Trace:
        """Sweep once; the memory trace on a vacuum frequency axis."""
        start, stop, points = self.read_axis()
        self.sweep(points)
        rbw_nm = self.read_rbw_nm()
        levels = self.read_levels(points)
        wavelength_nm = np.linspace(start, stop, points)
        return trace_from_wavelengths(wavelength_nm, levels, rbw_nm, self.medium)
