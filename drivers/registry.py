"""Which driver a device uses: ``driver = "odpm96" | "aq6370" | "ms9740"``.

The acquisition worker and ``odpm scan`` open devices through :func:`open_driver`
and only call what :class:`MonitorDriver` names, so a new instrument is a new
module plus one entry in :data:`DRIVERS`.  ``modes`` says what each can do: bench
OSAs sweep traces and have neither photodiode ports nor a stream.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from drivers.odpm96 import FrameStream, Odpm96, Trace
from drivers.transport import TransportKind, open_transport
from odpm.grid import PortGrid

DriverName = Literal["odpm96", "aq6370", "ms9740"]
TraceFormat = Literal["binary", "ascii"]
MediumSetting = Literal["auto", "vacuum", "air"]


class MonitorDriver(Protocol):
    """What the acquisition worker needs of a driver (the ODPM-96 driver's interface)."""

    modes: tuple[str, ...]

    def close(self) -> None: ...
    def identify(self) -> str: ...
    def read_port_grid(self) -> PortGrid: ...
    def set_averaging(self, count: int) -> None: ...
    def read_temperature_c(self) -> float | None: ...
    def read_powers(self) -> npt.NDArray[np.float64]: ...
    def read_trace(self) -> Trace: ...
    def stream(self, rate_hz: float | None = None) -> FrameStream: ...


@runtime_checkable
class Interruptible(Protocol):
    """A driver whose long waits (a bench OSA's sweep) can be cut short when the
    acquisition stops (drivers.osa.ScpiOsa.set_stop_check)."""

    def set_stop_check(self, should_stop: Callable[[], bool]) -> None: ...


@dataclass(frozen=True, slots=True)
class DriverInfo:
    name: DriverName
    description: str
    modes: tuple[str, ...]


DRIVERS: dict[str, DriverInfo] = {
    "odpm96": DriverInfo("odpm96", "PPI ODPM-96 optical channel monitor", Odpm96.modes),
    "aq6370": DriverInfo("aq6370", "Yokogawa AQ6370-series bench OSA", ("trace",)),
    "ms9740": DriverInfo("ms9740", "Anritsu MS9740A/B bench OSA", ("trace",)),
}


def driver_info(name: str) -> DriverInfo:
    try:
        return DRIVERS[name]
    except KeyError:
        raise ValueError(
            f"unknown driver {name!r}: choose one of {', '.join(sorted(DRIVERS))}"
        ) from None


def check_mode(driver: str, mode: str) -> None:
    """ValueError, phrased for a person, if ``driver`` cannot acquire in ``mode``."""
    info = driver_info(driver)
    if mode not in info.modes:
        why = " (a bench OSA sweeps spectra; it has no photodiode ports)" if mode != "trace" else ""
        raise ValueError(
            f"the {driver} driver ({info.description}) has no {mode} mode: it supports "
            f"{', '.join(info.modes)}{why}"
        )


def needs_login(address: str) -> bool:
    """AQ6370: the Ethernet raw socket wants the login handshake; GPIB/USB do not."""
    a = address.strip()
    return a.lower().startswith("socket://") or a.upper().endswith("::SOCKET")


def open_driver(
    name: str,
    address: str,
    *,
    kind: TransportKind = "auto",
    baudrate: int = 115200,
    timeout_s: float = 2.0,
    username: str = "anonymous",
    password: str = "",
    trace_format: TraceFormat = "binary",
    medium: MediumSetting = "auto",
) -> MonitorDriver:
    """Open the transport and the named driver (logged in, for an AQ6370 on a socket).

    The transport is closed again if anything after opening it fails.
    """
    info = driver_info(name)
    transport = open_transport(address, kind=kind, baudrate=baudrate, timeout_s=timeout_s)
    try:
        if info.name == "odpm96":
            return Odpm96(transport)
        if info.name == "aq6370":
            from drivers.aq6370 import Aq6370

            aq = Aq6370(
                transport, trace_format=trace_format, medium=None if medium == "auto" else medium
            )
            if needs_login(address):
                aq.login(username, password)
            return aq
        from drivers.ms9740 import Ms9740

        return Ms9740(
            transport, trace_format=trace_format, medium="vacuum" if medium == "auto" else medium
        )
    except BaseException:
        transport.close()
        raise
