"""The plumbing every line-based SCPI driver shares: one command per line, one answer
line per query, IEEE 488.2's error queue (``SYSTem:ERRor?``) emptied after a setting.

Written once for the ODPM-96 (:mod:`drivers.odpm96`) and the bench OSAs
(:mod:`drivers.osa`): they differ only in the line terminator they send and in how
they spell the error query, which subclasses set as class attributes.
"""

from __future__ import annotations

from typing import Self

from drivers.errors import DeviceError, ProtocolError
from drivers.transport import Transport

#: ``SYST:ERR?`` is read at most this many times per check (an ODPM-96's queue holds 10);
#: a queue that never reports 0 by then is a protocol fault.
MAX_ERROR_READS = 32


def parse_int(text: str, what: str) -> int:
    """An integer answer, or a :class:`ProtocolError` naming the query."""
    try:
        return int(text)
    except ValueError:
        raise ProtocolError(f"{what}: expected an integer, got {text!r}") from None


def parse_error_answer(text: str) -> tuple[int, str]:
    """``-113,"Undefined header"`` -> ``(-113, "Undefined header")`` (SCPI-99, 21.8)."""
    code_text, sep, message = text.partition(",")
    if not sep:
        raise ProtocolError(f'SYST:ERR?: expected <code>,"<message>", got {text!r}')
    code = parse_int(code_text.strip(), "SYST:ERR? code")
    return code, message.strip().strip('"')


class ScpiInstrument:
    """One instrument on ``transport`` (which the driver owns and closes)."""

    #: Line terminator the driver sends.
    terminator = b"\n"
    #: The error-queue query, as this instrument's manual spells it.
    error_query = "SYST:ERR?"

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def write(self, command: str) -> None:
        """Send one command line (no answer read)."""
        if "\n" in command or "\r" in command:
            raise ValueError(f"a command is one line, got {command!r}")
        self.transport.write(command.encode("ascii") + self.terminator)

    def read_text(self, command: str) -> str:
        """One answer line, decoded and stripped (``command`` names it in errors)."""
        raw = self.transport.read_line()
        try:
            return raw.decode("ascii").strip()
        except UnicodeDecodeError:
            raise ProtocolError(f"{command}: answer is not ASCII: {raw[:40]!r}") from None

    def query(self, command: str) -> str:
        """Send a query and return its one-line answer (decoded, stripped)."""
        with self.transport.lock:
            self.write(command)
            return self.read_text(command)

    def command(self, command: str) -> None:
        """Send a setting and raise :class:`DeviceError` if the instrument queued an error."""
        with self.transport.lock:
            self.write(command)
            self.check_errors(command)

    def read_error(self) -> tuple[int, str]:
        """The oldest queued error (``(0, "No error")`` when the queue is empty)."""
        return parse_error_answer(self.query(self.error_query))

    def check_errors(self, command: str | None = None) -> None:
        """Empty the error queue; raise the first error found, if any."""
        first: tuple[int, str] | None = None
        for _ in range(MAX_ERROR_READS):
            code, message = self.read_error()
            if code == 0:
                break
            if first is None:
                first = (code, message)
        else:
            raise ProtocolError(f"{self.error_query} never reported 0 (error queue does not drain)")
        if first is not None:
            raise DeviceError(first[0], first[1], command)
