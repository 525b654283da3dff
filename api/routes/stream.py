"""Live readings and alarm events as Server-Sent Events.

Each client gets its own bounded queue (see :mod:`odpm.live`): a client that
reads too slowly loses its oldest events and receives a ``gap`` event saying
how many; acquisition and other clients never wait for it.

A client that goes away must release its queue at once, whatever the server
underneath reports: some ASGI servers let ``send`` return silently on a closed
connection, so a stream that only notices a failed write would keep a
subscription (and ``odpm_stream_clients``) for ever.  :func:`live_subscription`
watches ``http.disconnect`` itself and ends the stream when it arrives; every
SSE route uses it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.sse import EventSourceResponse, ServerSentEvent

from api.deps import DeviceDep, ReadAccess, ServiceDep
from api.routes import json_error_responses
from odpm.live import Broadcaster, Subscription

router = APIRouter(tags=["stream"], dependencies=[ReadAccess])


async def _close_on_disconnect(request: Request, sub: Subscription) -> None:
    """Close ``sub`` when the client disconnects (a GET stream has no body to read)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
    sub.close()


@contextlib.asynccontextmanager
async def live_subscription(
    request: Request,
    broadcaster: Broadcaster,
    device_id: str | None,
    *,
    maxsize: int | None = None,
    events: frozenset[str] | None = None,
) -> AsyncIterator[Subscription]:
    """A subscription that ends when the client disconnects, and is always released."""
    sub = broadcaster.subscribe(device_id, maxsize=maxsize, events=events)
    watcher = asyncio.create_task(_close_on_disconnect(request, sub))
    try:
        yield sub
    finally:
        watcher.cancel()
        broadcaster.unsubscribe(sub)


@router.get(
    "/devices/{device_id}/stream",
    response_class=EventSourceResponse,
    responses=json_error_responses(401, 403, 404),
)
async def stream(
    dev: DeviceDep, service: ServiceDep, request: Request
) -> AsyncIterator[ServerSentEvent]:
    """Events: ``reading`` (the latest first, then one per scan), ``alarm``, ``gap``."""
    async with live_subscription(request, service.broadcaster, dev.id) as sub:
        cached = dev.latest
        if cached is not None:
            yield ServerSentEvent(raw_data=cached.json.decode(), event="reading")
        async for event in sub:
            yield ServerSentEvent(raw_data=event.data, event=event.event)
