"""Typed driver errors, so the acquisition worker can tell a slow device from a broken link.

Every error a driver raises is a :class:`DriverError`; the worker treats them all the
same way (close, back off, reconnect), while people and logs get the specific kind.
Drivers never retry or reconnect themselves: that policy belongs to the worker.
"""

from __future__ import annotations


class DriverError(Exception):
    """Base of every error raised by a transport or a device driver."""


class DeviceTimeout(DriverError):  # noqa: N818 (name fixed by the architecture contract)
    """The device did not answer (or not completely) within the transport timeout."""


class Disconnected(DriverError):  # noqa: N818 (name fixed by the architecture contract)
    """The link is gone or could not be opened (socket closed, pty hung up, USB unplugged)."""


class Interrupted(DriverError):  # noqa: N818 (reads like the others: DeviceTimeout, Disconnected)
    """A long wait on the device (a bench OSA's sweep) was abandoned because the
    acquisition is stopping: not a fault of the device, so not counted as one."""


class ProtocolError(DriverError):
    """The device answered, but not in the documented format (garbled line, short block)."""


class DeviceError(DriverError):
    """The device reported an error through ``SYST:ERR?``.

    Negative codes are SCPI command/execution errors (our command was wrong);
    positive codes are hardware faults (e.g. ``101,"TEC not locked"``).
    """

    def __init__(self, code: int, message: str, command: str | None = None) -> None:
        self.code = code
        self.message = message
        self.command = command
        where = f" after {command!r}" if command else ""
        super().__init__(f"device error {code}, {message!r}{where}")
