"""Live readings and alarm events as Server-Sent Events.

Each client gets its own bounded queue (see :mod:`odpm.live`): a client that
reads too slowly loses its oldest events and receives a ``gap`` event saying
how many; acquisition and other clients never wait for it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import APIRouter
from fastapi.sse import EventSourceResponse, ServerSentEvent

from api.deps import DeviceDep, ReadAccess, ServiceDep
from api.routes import json_error_responses

router = APIRouter(tags=["stream"], dependencies=[ReadAccess])


@router.get(
    "/devices/{device_id}/stream",
    response_class=EventSourceResponse,
    responses=json_error_responses(401, 403, 404),
)
async def stream(dev: DeviceDep, service: ServiceDep) -> AsyncIterator[ServerSentEvent]:
    """Events: ``reading`` (the latest first, then one per scan), ``alarm``, ``gap``."""
    sub = service.broadcaster.subscribe(dev.id)
    try:
        cached = dev.latest
        if cached is not None:
            yield ServerSentEvent(raw_data=cached.json.decode(), event="reading")
        async for event in sub:
            yield ServerSentEvent(raw_data=event.data, event=event.event)
    finally:
        service.broadcaster.unsubscribe(sub)
