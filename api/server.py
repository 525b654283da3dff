"""uvicorn settings that bound what a client can hold: time, connections, header size.

uvicorn closes an idle keep-alive connection after ``timeout_keep_alive``, but
arms that timer only once a response is complete: a connection that sends
nothing, or half a request, is held forever (2,000 slowloris connections stayed
open for 130 s in an abuse test; only the file-descriptor limit bounded them).
:class:`ReadTimeoutH11Protocol` adds the missing deadline: from the moment a
connection is made, or a request starts arriving, the client has
``api.read_timeout_s`` to deliver the whole request (headers and body); after
that the connection is closed.  Once a request is complete, the app's own time
(a long SSE stream, a slow scan) is not limited by it.

The rest is uvicorn's own: ``timeout_keep_alive`` for idle connections,
``limit_concurrency`` (503 beyond that many connections and requests in
progress), and h11's cap on an incomplete request head (16 KiB, 400 beyond).
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from odpm.config import ApiConfig

#: Largest request line plus headers (h11's default, stated so it is a decision).
MAX_HEAD_BYTES = 16 * 1024


class ReadTimeoutH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for receiving each request."""

    read_timeout_s: ClassVar[float] = 10.0

    _read_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._arm_read_deadline()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._receiving_request():
            self._arm_read_deadline()
        else:
            self._disarm_read_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_read_deadline()
        super().connection_lost(exc)

    def _receiving_request(self) -> bool:
        """A request has started (bytes buffered, or headers in and body pending)."""
        state = self.conn.their_state
        if state is h11.SEND_BODY:
            return True
        return state is h11.IDLE and bool(self.conn.trailing_data[0])

    def _arm_read_deadline(self) -> None:
        if self._read_deadline is None:
            self._read_deadline = self.loop.call_later(self.read_timeout_s, self._read_timed_out)

    def _disarm_read_deadline(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
            self._read_deadline = None

    def _read_timed_out(self) -> None:
        self._read_deadline = None
        state = self.conn.their_state
        idle_first = state is h11.IDLE and self.cycle is None
        if (idle_first or self._receiving_request()) and not self.transport.is_closing():
            self.transport.close()


def uvicorn_config(app: Any, api: ApiConfig, **options: Any) -> uvicorn.Config:
    """A :class:`uvicorn.Config` for ``app`` with the limits of ``api``."""
    protocol = type(
        "ReadTimeoutH11Protocol",
        (ReadTimeoutH11Protocol,),
        {"read_timeout_s": api.read_timeout_s},
    )
    return uvicorn.Config(
        app,
        host=api.host,
        port=api.port,
        http=protocol,
        timeout_keep_alive=max(1, round(api.keep_alive_s)),
        limit_concurrency=api.max_connections,
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
        **options,
    )
