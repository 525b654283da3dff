"""Live readings and alarm events as Server-Sent Events.

Each client gets its own bounded queue (see :mod:`odpm.live`): a client that
reads too slowly loses its oldest events and receives a ``gap`` event saying
how many; acquisition and other clients never wait for it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from fastapi import APIRouter
from fastapi.sse import EventSourceResponse, ServerSentEvent

from api.deps import DeviceDep, ReadAccess, ServiceDep
from api.routes import json_error_responses
from api.schemas import SummaryOut
from odpm.summary import reading_summary

router = APIRouter(tags=["stream"], dependencies=[ReadAccess])

#: What a device's stream carries (the ``summary`` events are for ``GET /stream``).
DEVICE_EVENTS = frozenset({"reading", "alarm"})
#: What the all-devices stream carries.
SUMMARY_EVENTS = frozenset({"summary", "alarm"})


@router.get(
    "/devices/{device_id}/stream",
    response_class=EventSourceResponse,
    responses=json_error_responses(401, 403, 404),
)
async def stream(dev: DeviceDep, service: ServiceDep) -> AsyncIterator[ServerSentEvent]:
    """Events: ``reading`` (the latest first, then one per scan), ``alarm``, ``gap``."""
    sub = service.broadcaster.subscribe(dev.id, events=DEVICE_EVENTS)
    try:
        cached = dev.latest
        if cached is not None:
            yield ServerSentEvent(raw_data=cached.json.decode(), event="reading")
        async for event in sub:
            yield ServerSentEvent(raw_data=event.data, event=event.event)
    finally:
        service.broadcaster.unsubscribe(sub)


@router.get(
    "/stream",
    response_class=EventSourceResponse,
    responses={
        200: {
            "model": SummaryOut,
            "description": "Server-Sent Events; each ``summary`` event's data is a SummaryOut.",
        },
        **json_error_responses(401, 403),
    },
)
async def summary_stream(service: ServiceDep) -> AsyncIterator[ServerSentEvent]:
    """Every device at once, for overviews: ``summary`` (each device's latest first,
    then one per scan: scan-level values, no channels), ``alarm``, ``gap``.

    One connection for 300 devices instead of 300 device streams; a summary is
    ~300 bytes where a reading is ~10 kB.
    """
    sub = service.broadcaster.subscribe(None, events=SUMMARY_EVENTS)
    try:
        for dev in list(service.devices.values()):
            cached = dev.latest
            if cached is not None:
                data = json.dumps(reading_summary(cached.value), allow_nan=False)
                yield ServerSentEvent(raw_data=data, event="summary")
        async for event in sub:
            yield ServerSentEvent(raw_data=event.data, event=event.event)
    finally:
        service.broadcaster.unsubscribe(sub)
