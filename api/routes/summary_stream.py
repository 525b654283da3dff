"""The all-devices live stream: per-scan summaries for overviews (``GET /api/v1/stream``).

One connection for 300 devices instead of 300 device streams, and a summary is
~300 bytes where a full reading is ~10 kB (:func:`odpm.summary.reading_summary`).
Summaries are opt-in events of the broadcaster (:data:`odpm.live.OPT_IN_EVENTS`),
encoded only while someone listens here.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.sse import EventSourceResponse, ServerSentEvent

from api.deps import ReadAccess, ServiceDep
from api.routes import json_error_responses
from api.routes.stream import live_subscription
from api.schemas import SummaryOut
from odpm.summary import reading_summary

router = APIRouter(tags=["stream"], dependencies=[ReadAccess])

#: What the all-devices stream carries (``gap`` comes from the subscription itself).
SUMMARY_EVENTS = frozenset({"summary", "alarm"})
#: Queue length per device: a few seconds of summaries at 1 scan/s, so that a
#: browser busy for a moment does not lose any (300 devices: 1,200 x ~300 bytes).
QUEUE_EVENTS_PER_DEVICE = 4


@router.get(
    "/stream",
    response_class=EventSourceResponse,
    responses={
        200: {
            "model": SummaryOut,
            "description": "Server-Sent Events; the data of each `summary` event is a "
            "SummaryOut, of each `alarm` event an AlarmEventOut.",
        },
        **json_error_responses(401, 403),
    },
)
async def summary_stream(service: ServiceDep, request: Request) -> AsyncIterator[ServerSentEvent]:
    """Every device at once: ``summary`` (each device's latest first, then one per
    scan: scan-level values and the scan's alarm events, no channels), ``alarm``, ``gap``."""
    queue = max(service.broadcaster.queue_size, QUEUE_EVENTS_PER_DEVICE * len(service.devices))
    async with live_subscription(
        request, service.broadcaster, None, maxsize=queue, events=SUMMARY_EVENTS
    ) as sub:
        for dev in list(service.devices.values()):
            cached = dev.latest
            if cached is not None:
                data = json.dumps(reading_summary(cached.value), allow_nan=False)
                yield ServerSentEvent(raw_data=data, event="summary")
        async for event in sub:
            yield ServerSentEvent(raw_data=event.data, event=event.event)
