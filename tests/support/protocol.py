"""A sent/reply fake transport for driver tests, in the style of PyMeasure's ``expected_protocol``.

``expected_protocol([(b"*IDN?\\n", b"PPI,ODPM-96,1,2\\n"), ...])`` yields a
transport that checks every write against the next expected message and then
makes that pair's reply readable.  A reply of ``None`` means the device stays
silent (reads time out).  Leaving pairs unused fails the test, as does any
write that was not expected.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from drivers.errors import DeviceTimeout, Disconnected
from drivers.transport import Transport

Pair = tuple[bytes | None, bytes | None]


class FakeTransport(Transport):
    def __init__(self, pairs: Sequence[Pair]) -> None:
        super().__init__("fake://")
        self._pairs = list(pairs)
        self._index = 0
        self._rx = bytearray()
        self._timeout_s = 1.0
        self._closed = False
        # Pairs with no command are replies the device sends unprompted (stream data).
        self._release_unprompted()

    def _release_unprompted(self) -> None:
        while self._index < len(self._pairs) and self._pairs[self._index][0] is None:
            reply = self._pairs[self._index][1]
            self._rx += reply or b""
            self._index += 1

    @property
    def timeout_s(self) -> float:
        return self._timeout_s

    @timeout_s.setter
    def timeout_s(self, value: float) -> None:
        self._timeout_s = value

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def remaining(self) -> list[Pair]:
        return self._pairs[self._index :]

    def write(self, data: bytes) -> None:
        if self._closed:
            raise Disconnected("fake transport closed")
        if self._index >= len(self._pairs):
            raise AssertionError(f"unexpected write {data!r}: no more messages expected")
        expected, reply = self._pairs[self._index]
        assert data == expected, f"sent {data!r}, expected {expected!r}"
        self._index += 1
        self._rx += reply or b""
        self._release_unprompted()

    def _take(self, n: int) -> bytes:
        out = bytes(self._rx[:n])
        del self._rx[:n]
        return out

    def read_line(self) -> bytes:
        i = self._rx.find(b"\n")
        if i < 0:
            self._rx.clear()
            raise DeviceTimeout("fake: no line")
        line = self._take(i + 1)[:-1]
        return line[:-1] if line.endswith(b"\r") else line

    def read_exact(self, n: int) -> bytes:
        if len(self._rx) < n:
            self._rx.clear()
            raise DeviceTimeout(f"fake: fewer than {n} bytes")
        return self._take(n)

    def read_some(self, max_bytes: int) -> bytes:
        if not self._rx:
            raise DeviceTimeout("fake: nothing to read")
        return self._take(max_bytes)

    def discard_input(self) -> None:
        self._rx.clear()

    def close(self) -> None:
        self._closed = True


@contextmanager
def expected_protocol(pairs: Sequence[Pair]) -> Iterator[FakeTransport]:
    """A :class:`FakeTransport`; on exit, asserts every expected message was sent."""
    transport = FakeTransport(pairs)
    yield transport
    assert not transport.remaining, f"messages never sent: {transport.remaining}"
