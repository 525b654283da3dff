"""What the bench OSA drivers (Yokogawa AQ6370, Anritsu MS9740) share.

A bench OSA sweeps: it has no photodiode ports and no binary stream, so an OSA
driver offers only the ``trace`` mode of the ODPM-96 driver and says so
clearly (:class:`UnsupportedMode`) when asked for the others.  Its axis is
uniform in wavelength; :func:`trace_from_wavelengths` turns it into frequency
(vacuum wavelengths first: an OSA may report air wavelengths, 0.42 nm shorter at
1550 nm) without resampling, so the pipeline integrates the points the
instrument measured.

Like the ODPM-96 driver, these drivers never retry, reconnect or wait beyond a
bounded poll: a sweep that does not finish in time, an error in
``:SYSTem:ERRor?`` or a malformed block is raised at once and the acquisition
worker closes, backs off and reconnects.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Literal, NoReturn

import numpy as np
import numpy.typing as npt

from drivers.errors import DeviceTimeout, DriverError, Interrupted, ProtocolError
from drivers.ieee488 import read_definite_block
from drivers.odpm96 import Trace
from drivers.scpi import ScpiInstrument
from drivers.transport import Transport
from odpm.air import air_to_vacuum_nm
from odpm.grid import wavelength_nm_to_frequency_thz

WavelengthMedium = Literal["vacuum", "air"]
#: Longest ASCII answer accepted: 50,001 values of up to 24 characters each.
MAX_ASCII_ANSWER_BYTES = 50001 * 24
#: ``:SYSTem:ERRor?`` is read at most this many times per check.


class UnsupportedMode(DriverError):  # noqa: N818 (reads as a sentence: "unsupported mode")
    """Asked an OSA for port powers or a stream: it only sweeps traces."""


def trace_from_wavelengths(
    wavelength_nm: npt.ArrayLike,
    level_dbm: npt.ArrayLike,
    rbw_nm: float,
    medium: WavelengthMedium,
) -> Trace:
    """An OSA sweep as a :class:`Trace`: vacuum frequency ascending, float32 dBm, RBW in GHz.

    The RBW is converted at the sweep's centre wavelength (``df = f dl / l``);
    across the C band a fixed RBW in nm varies by +/-2.3 % in GHz, i.e. +/-0.1 dB
    of noise normalisation, which is why OSA OSNR is specified at 0.1 nm, not GHz.
    """
    wl = np.asarray(wavelength_nm, dtype=np.float64)
    level = np.asarray(level_dbm, dtype=np.float64)
    if wl.ndim != 1 or wl.shape != level.shape:
        raise ProtocolError(
            f"wavelength axis ({wl.size} points) and levels ({level.size}) do not match"
        )
    if wl.size < 2 or not np.all(np.isfinite(wl)) or not np.all(wl > 0):
        raise ProtocolError("the wavelength axis has fewer than 2 points or non-positive values")
    if not (math.isfinite(rbw_nm) and rbw_nm > 0):
        raise ProtocolError(f"implausible resolution bandwidth {rbw_nm} nm")
    vac_nm = wl if medium == "vacuum" else air_to_vacuum_nm(wl)
    frequency_thz = wavelength_nm_to_frequency_thz(vac_nm)
    centre_nm = float(vac_nm[vac_nm.size // 2])
    rbw_ghz = float(wavelength_nm_to_frequency_thz(centre_nm)) * 1000.0 * rbw_nm / centre_nm
    power = level.astype(np.float32)
    if frequency_thz[0] > frequency_thz[-1]:
        frequency_thz, power = frequency_thz[::-1].copy(), power[::-1].copy()
    return Trace(frequency_thz, power, rbw_ghz)


def parse_number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ProtocolError(f"{what}: expected a number, got {text[:40]!r}") from None
    if not math.isfinite(value):
        raise ProtocolError(f"{what}: expected a finite number, got {text[:40]!r}")
    return value


def parse_integer(text: str, what: str) -> int:
    value = parse_number(text, what)
    if not value.is_integer():
        raise ProtocolError(f"{what}: expected an integer, got {text[:40]!r}")
    return int(value)


def parse_ascii_values(text: str, what: str) -> npt.NDArray[np.float64]:
    """A comma-separated list of numbers (the ASCII form of a trace)."""
    try:
        values = np.array(text.split(","), dtype=np.float64)
    except ValueError:
        raise ProtocolError(f"{what}: not a list of numbers: {text[:60]!r}") from None
    return values


def parse_real_block(payload: bytes, points: int | None, what: str) -> npt.NDArray[np.float64]:
    """A REAL block: little-endian float64 (REAL,64), or float32 when ``points`` says so."""
    if points is not None and len(payload) == 4 * points and points:
        return np.frombuffer(payload, dtype="<f4").astype(np.float64)
    if len(payload) % 8 or (points is not None and len(payload) != 8 * points):
        expected = "a multiple of 8" if points is None else f"{8 * points}"
        raise ProtocolError(f"{what}: block of {len(payload)} bytes, expected {expected}")
    return np.frombuffer(payload, dtype="<f8").astype(np.float64)


def _never() -> bool:
    return False


class ScpiOsa(ScpiInstrument):
    """Plumbing for one OSA on ``transport`` (which the driver owns and closes)."""

    #: What :class:`~odpm.acquisition.AcquisitionWorker` may ask of this driver.
    modes: tuple[str, ...] = ("trace",)
    #: Shown in errors ("the AQ6370 has no port mode").
    model_name = "OSA"
    #: The error-queue query, as the OSAs' manuals spell it.
    error_query = ":SYSTem:ERRor?"

    def __init__(self, transport: Transport, *, poll_s: float = 0.05) -> None:
        super().__init__(transport)
        self.poll_s = poll_s
        self._should_stop: Callable[[], bool] = _never
        transport.max_line_bytes = max(transport.max_line_bytes, MAX_ASCII_ANSWER_BYTES)

    def query_block(self, command: str) -> bytes:
        with self.transport.lock:
            self.write(command)
            return read_definite_block(self.transport)

    def identify_as(self, maker: str, model_prefix: str, name: str) -> str:
        """Ask ``*IDN?`` and check it names ``maker``'s ``model_prefix``...; the model
        field (``AQ6370D``) becomes :attr:`model_name`.  ProtocolError otherwise."""
        idn = self.query("*IDN?")
        fields = [f.strip() for f in idn.split(",")]
        maker_ok = len(fields) >= 2 and maker in fields[0].upper()
        if not maker_ok or not fields[1].upper().startswith(model_prefix):
            raise ProtocolError(f"*IDN?: not {name}: {idn!r}")
        self.model_name = fields[1]
        return idn

    def set_stop_check(self, should_stop: Callable[[], bool]) -> None:
        """``should_stop`` is asked at every poll of a long wait (a sweep can take
        minutes); when it says yes the wait ends with :class:`Interrupted`, so stopping
        the acquisition never waits for the instrument."""
        self._should_stop = should_stop

    def poll_until(self, done: Callable[[], bool], timeout_s: float, what: str) -> None:
        """Call ``done`` every ``poll_s`` until it is true; DeviceTimeout after
        ``timeout_s``, Interrupted as soon as the stop check (see set_stop_check) says so."""
        deadline = time.monotonic() + timeout_s
        while not done():
            if self._should_stop():
                raise Interrupted(f"{what} abandoned: the acquisition is stopping")
            if time.monotonic() >= deadline:
                raise DeviceTimeout(f"{what} did not complete within {timeout_s:.1f} s")
            time.sleep(self.poll_s)

    # -- what an OSA cannot do ----------------------------------------------------------
    def _unsupported(self, what: str) -> NoReturn:
        raise UnsupportedMode(
            f'the {self.model_name} is a scanning OSA: it has no {what}; use mode = "trace"'
        )

    def read_port_grid(self) -> NoReturn:
        self._unsupported("photodiode ports (power mode)")

    def read_powers(self) -> NoReturn:
        self._unsupported("photodiode ports (power mode)")

    def stream(self, rate_hz: float | None = None) -> NoReturn:
        self._unsupported("binary stream (stream mode)")

    def read_temperature_c(self) -> float | None:
        """Bench OSAs report no monitor temperature."""
        return None
