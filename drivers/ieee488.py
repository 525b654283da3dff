"""IEEE 488.2 definite-length arbitrary blocks, read and written once for every driver.

A block is ``#<d><len><payload>``: ``d`` (1-9) is the number of decimal digits
of ``len``, the payload's byte count (IEEE 488.2-1992, 8.7.9).  Instruments end
the response with their line terminator: the ODPM-96 a LF, the Yokogawa AQ6370
CR LF.  Both are accepted after the payload; anything else means the byte count
and the bytes sent disagree (a truncated or padded block), which is a
:class:`~drivers.errors.ProtocolError`, never silently misaligned data.

The payload is read with :meth:`Transport.read_exact`, so a 0x0A inside binary
data never ends it early, and a device that stalls mid-block raises
:class:`~drivers.errors.DeviceTimeout` at the transport's deadline.
"""

from __future__ import annotations

from drivers.errors import ProtocolError
from drivers.transport import Transport

#: Largest block accepted (a 10,001-point REAL,64 trace is 80 kB; 50,001 points 400 kB).
MAX_BLOCK_BYTES = 16 * 1024 * 1024


def read_definite_block(transport: Transport, *, max_bytes: int = MAX_BLOCK_BYTES) -> bytes:
    """Read one block and its terminator (LF or CR LF); return the payload."""
    head = transport.read_exact(2)
    if head[:1] != b"#" or not head[1:2].isdigit() or head[1:2] == b"0":
        raise ProtocolError(f"expected a definite-length block '#<d>...', got {head!r}")
    digits = int(head[1:2])
    length_text = transport.read_exact(digits)
    if not length_text.isdigit():
        raise ProtocolError(f"block length is not decimal: {length_text!r}")
    length = int(length_text)
    if length > max_bytes:
        raise ProtocolError(f"block of {length} bytes is larger than {max_bytes}")
    payload = transport.read_exact(length)
    end = transport.read_exact(1)
    if end == b"\r":
        end = transport.read_exact(1)
    if end != b"\n":
        raise ProtocolError(
            f"block of {length} bytes not followed by LF (or CR LF) but {end!r} "
            "(truncated or padded block)"
        )
    return payload


def encode_definite_block(payload: bytes, terminator: bytes = b"\n") -> bytes:
    """``payload`` framed as a definite-length block plus ``terminator`` (for emulators)."""
    n = str(len(payload)).encode("ascii")
    if len(n) > 9:
        raise ValueError(f"a block holds at most 999,999,999 bytes, got {len(payload)}")
    return b"#" + str(len(n)).encode("ascii") + n + payload + terminator
