"""Driver for the Yokogawa AQ6370 series (AQ6370C/D, AQ6373, AQ6374, AQ6380) bench OSAs.

Command set (tested against our emulator; docs/instruments.md lists it):

* Ethernet is a raw socket on port 10001 (``socket://host:10001`` or
  ``TCPIP::host::10001::SOCKET``) that wants a login first: ``open "<user>"``,
  the instrument answers ``AUTHENTICATE CRAM-MD5.``, we send the password (any
  string for an anonymous user), it answers ``ready``.  The password is never
  logged and never appears in an error.  GPIB and USB (VISA) need no login.
* ``:FORMat:DATA REAL,64`` makes ``:TRACe:X? TRA`` (metres) and ``:TRACe:Y? TRA``
  (dBm) IEEE 488.2 blocks of little-endian doubles; ``ASCII`` is the fallback.
* A single sweep is ``:INITiate:SMODe SINGle`` then ``*CLS;:INITiate``; it is
  complete when bit 0 of ``:STATus:OPERation:EVENt?`` is set.  The poll is
  bounded by :func:`sweep_timeout_s`, derived from the sweep's points,
  sensitivity and averaging, so a wedged sweep is an error, not a hang.
* ``:SENSe:CORRection:RVELocity:MEDium?`` (0 air, 1 vacuum) says which
  wavelengths the instrument reports; air ones are converted (:mod:`odpm.air`).
* ``:SENSe:BANDwidth:RESolution?`` (metres) is the RBW; the AQ6370 reports no
  separate noise-equivalent bandwidth, so the pipeline normalises noise by it.
* Optional WDM analysis: ``:CALCulate:CATegory WDM``, ``:CALCulate``, then
  ``:CALCulate:DATA:NCHannels?``, ``CWAVelengths?``, ``CPOWers?``, ``CSNR?``
  (every one a *query*: PyMeasure's ``get_analysis()`` writes ``:CALCulate:DATA?``
  without reading, a bug this driver does not share).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from drivers.errors import DriverError, ProtocolError
from drivers.odpm96 import Trace
from drivers.osa import (
    ScpiOsa,
    WavelengthMedium,
    parse_ascii_values,
    parse_integer,
    parse_number,
    parse_real_block,
    trace_from_wavelengths,
)
from drivers.transport import Transport
from odpm.air import air_to_vacuum_nm

#: The AQ6370's Ethernet remote port.
DEFAULT_PORT = 10001
#: What the instrument says after ``open "<user>"`` and after a good password.
AUTH_CHALLENGE = "AUTHENTICATE CRAM-MD5."
AUTH_READY = "ready"

#: Rough upper bound of one sweep's duration per 1001 points by sensitivity
#: (``:SENSe:SENSe?`` 0..6 = NHLD, NAUT, MID, HIGH1, HIGH2, HIGH3, NORMal).  The
#: datasheet's sweep times over a 100 nm span are a fraction of these; the bound
#: only has to catch a sweep that never ends, not to predict one.
_SWEEP_S_PER_1001_POINTS = (2.0, 1.0, 4.0, 15.0, 30.0, 90.0, 2.0)
#: Fixed allowance added to every sweep timeout (settling, auto-offset, network).
SWEEP_TIMEOUT_MARGIN_S = 5.0

TraceFormat = Literal["binary", "ascii"]


class LoginRefused(DriverError):  # noqa: N818 (reads as a sentence: "login refused")
    """The AQ6370 did not answer ``ready`` to the password."""


def sweep_timeout_s(
    points: int, sensitivity: int, averaging: int, margin_s: float = SWEEP_TIMEOUT_MARGIN_S
) -> float:
    """How long a single sweep may take before it is an error (see the module docstring)."""
    per = (
        _SWEEP_S_PER_1001_POINTS[sensitivity]
        if 0 <= sensitivity < 7
        else max(_SWEEP_S_PER_1001_POINTS)
    )
    return margin_s + per * max(points, 1001) / 1001 * max(averaging, 1)


@dataclass(frozen=True, slots=True)
class WdmAnalysis:
    """The instrument's own WDM analysis, one value per channel it detected.

    ``wavelength_nm`` is in vacuum (converted when the instrument reports air).
    """

    wavelength_nm: npt.NDArray[np.float64]
    power_dbm: npt.NDArray[np.float64]
    osnr_db: npt.NDArray[np.float64]


class Aq6370(ScpiOsa):
    """One AQ6370-series OSA on ``transport``; :meth:`login` first on a raw socket."""

    model_name = "AQ6370"
    terminator = b"\r\n"

    def __init__(
        self,
        transport: Transport,
        *,
        trace_format: TraceFormat = "binary",
        medium: WavelengthMedium | None = None,
        poll_s: float = 0.05,
        sweep_margin_s: float = SWEEP_TIMEOUT_MARGIN_S,
    ) -> None:
        super().__init__(transport, poll_s=poll_s)
        self.sweep_margin_s = sweep_margin_s
        self.trace_format: TraceFormat = trace_format
        #: None: ask the instrument (``:SENSe:CORRection:RVELocity:MEDium?``).
        self.medium_override = medium
        self.last_sweep_timeout_s = 0.0

    # -- connection -------------------------------------------------------------------------
    def login(self, user: str, password: str) -> None:
        """The Ethernet handshake; raises :class:`LoginRefused` (without the password)."""
        if any(c in user for c in '"\r\n'):
            raise ValueError(f"user name must not contain quotes or line breaks: {user!r}")
        if "\r" in password or "\n" in password:
            raise ValueError("the AQ6370 password must not contain line breaks")
        with self.transport.lock:
            self.write(f'open "{user}"')
            challenge = self.read_text("open")
            if challenge != AUTH_CHALLENGE:
                raise ProtocolError(
                    f"login: expected {AUTH_CHALLENGE!r} after open, got {challenge[:60]!r}"
                )
            self.transport.write(password.encode("utf-8") + self.terminator)
            answer = self.read_text("password")
        if answer != AUTH_READY:
            raise LoginRefused(f"login refused for user {user!r} (instrument said {answer[:40]!r})")

    def identify(self) -> str:
        """The ``*IDN?`` answer; ProtocolError unless it names a Yokogawa AQ63xx."""
        idn = self.identify_as("YOKOGAWA", "AQ63", "a Yokogawa AQ63xx OSA")
        self.configure()
        return idn

    def configure(self) -> None:
        """Data format and single-sweep mode, each checked in ``:SYSTem:ERRor?``."""
        fmt = "REAL,64" if self.trace_format == "binary" else "ASCII"
        self.command(f":FORMat:DATA {fmt}")
        self.command(":INITiate:SMODe SINGle")

    def set_averaging(self, count: int) -> None:
        if not 1 <= count <= 999:
            raise ValueError(f"averaging must be in 1..999, got {count}")
        self.command(f":SENSe:AVERage:COUNt {count}")

    # -- settings read back ------------------------------------------------------------------
    def read_medium(self) -> WavelengthMedium:
        if self.medium_override is not None:
            return self.medium_override
        answer = self.query(":SENSe:CORRection:RVELocity:MEDium?")
        if answer not in ("0", "1"):
            raise ProtocolError(
                f":SENSe:CORRection:RVELocity:MEDium?: expected 0 or 1, got {answer!r}"
            )
        return "air" if answer == "0" else "vacuum"

    def read_rbw_nm(self) -> float:
        rbw_m = parse_number(self.query(":SENSe:BANDwidth:RESolution?"), ":SENSe:BANDwidth?")
        if not 0 < rbw_m < 1e-7:
            raise ProtocolError(f":SENSe:BANDwidth:RESolution?: implausible {rbw_m} m")
        return rbw_m * 1e9

    def read_sweep_timeout_s(self) -> float:
        points = parse_integer(self.query(":SENSe:SWEep:POINts?"), ":SENSe:SWEep:POINts?")
        sensitivity = parse_integer(self.query(":SENSe:SENSe?"), ":SENSe:SENSe?")
        averaging = parse_integer(self.query(":SENSe:AVERage:COUNt?"), ":SENSe:AVERage:COUNt?")
        return sweep_timeout_s(points, sensitivity, averaging, self.sweep_margin_s)

    # -- measurement --------------------------------------------------------------------------
    def sweep(self) -> None:
        """One single sweep, waited for by polling ``:STATus:OPERation:EVENt?`` bit 0."""
        timeout = self.read_sweep_timeout_s()
        self.last_sweep_timeout_s = timeout
        with self.transport.lock:
            self.write("*CLS;:INITiate")

            def complete() -> bool:
                event = parse_integer(
                    self.query(":STATus:OPERation:EVENt?"), ":STATus:OPERation:EVENt?"
                )
                return bool(event & 1)

            self.poll_until(complete, timeout, "AQ6370 sweep")
        self.check_errors("*CLS;:INITiate")

    def _read_values(self, command: str) -> npt.NDArray[np.float64]:
        if self.trace_format == "binary":
            return parse_real_block(self.query_block(command), None, command)
        return parse_ascii_values(self.query(command), command)

    def read_sweep(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """The last sweep of trace A: (wavelength in metres, level in dBm), as sent."""
        x_m = self._read_values(":TRACe:X? TRA")
        y_dbm = self._read_values(":TRACe:Y? TRA")
        if x_m.size != y_dbm.size:
            raise ProtocolError(f"trace A has {x_m.size} wavelengths but {y_dbm.size} levels")
        return x_m, y_dbm

    def read_trace(self) -> Trace:
        """Sweep once and return trace A on a vacuum frequency axis."""
        self.sweep()
        medium = self.read_medium()
        rbw_nm = self.read_rbw_nm()
        x_m, y_dbm = self.read_sweep()
        return trace_from_wavelengths(x_m * 1e9, y_dbm, rbw_nm, medium)

    def read_wdm_analysis(self) -> WdmAnalysis:
        """Run the instrument's WDM analysis on the last sweep and read its table."""
        self.command(":CALCulate:CATegory WDM")
        self.command(":CALCulate")
        n = parse_integer(self.query(":CALCulate:DATA:NCHannels?"), ":CALCulate:DATA:NCHannels?")

        def values(command: str) -> npt.NDArray[np.float64]:
            v = parse_ascii_values(self.query(command), command) if n else np.zeros(0)
            if v.size != n:
                raise ProtocolError(f"{command}: {v.size} values for {n} channels")
            return v

        wavelength_m = values(":CALCulate:DATA:CWAVelengths?")
        power = values(":CALCulate:DATA:CPOWers?")
        osnr = values(":CALCulate:DATA:CSNR?")
        wavelength_nm = wavelength_m * 1e9
        if n and self.read_medium() == "air":
            wavelength_nm = air_to_vacuum_nm(wavelength_nm)
        return WdmAnalysis(wavelength_nm, power, osnr)
