"""The latest reading and the latest trace of a device, from the in-memory cache.

Both are sent as the bytes encoded once for that reading, so a dashboard
polling 200 devices costs a dictionary look-up per request.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response, status
from starlette.concurrency import run_in_threadpool

from api.deps import DeviceDep, ReadAccess, ServiceDep
from api.routes import JSONBytes, error_responses
from api.routes.history import IsoTime, check_time
from api.routes.traces import trace_at
from api.schemas import ReadingOut, TraceOut

router = APIRouter(tags=["readings"], dependencies=[ReadAccess])

#: ``trace?at=``: a stored trace further than this from the time asked is not "that time"
#: (the service may have been down): 404 naming the nearest ones instead.
AT_WITHIN_S = 300.0


@router.get(
    "/devices/{device_id}/latest",
    response_class=JSONBytes,
    responses={
        200: {"model": ReadingOut, "description": "Per-scan and per-channel values."},
        **error_responses(401, 403, 404),
    },
)
async def latest(dev: DeviceDep) -> JSONBytes:
    cached = dev.latest
    if cached is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, detail=f"no reading from device {dev.id!r} yet"
        )
    return JSONBytes(cached.json)


@router.get(
    "/devices/{device_id}/trace",
    response_class=JSONBytes,
    responses={
        200: {
            "model": TraceOut,
            "description": "The device's newest scan, when it is a spectrum (404 when the "
            "newest scan is a power reading, naming when the last trace was taken).",
        },
        **error_responses(401, 403, 404),
    },
)
async def trace(
    dev: DeviceDep,
    service: ServiceDep,
    at: Annotated[
        IsoTime | None,
        Query(description="ISO 8601: the stored trace nearest this time (the trace archive)"),
    ] = None,
    within_s: Annotated[
        float,
        Query(gt=0, le=10 * 365 * 86400, description="with at: how far the nearest may be"),
    ] = AT_WITHIN_S,
) -> Response:
    if at is not None:
        at = check_time("at", at if at.tzinfo is not None else at.replace(tzinfo=UTC))
        return await run_in_threadpool(trace_at, service, dev, at, within_s)
    cached = dev.trace
    if cached is None and not service.acquisition:
        # A replica: the newest stored trace if it reads a journal, else a 404 naming
        # the agent that keeps the traces.
        return await run_in_threadpool(trace_at, service, dev, datetime.now(UTC))
    if cached is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            detail=f"no trace from device {dev.id!r} yet (traces come from mode 'trace'; "
            "set it with PUT /api/v1/devices/{id}/acquisition or POST .../scan)",
        )
    latest = dev.latest
    if (
        latest is not None
        and latest.value.mode != "trace"
        and latest.value.time > cached.value.time
    ):
        # An old spectrum served as if current would mislead whoever plots it.
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            detail=f"the newest scan of device {dev.id!r} ({latest.value.time.isoformat()}) was "
            f"in {latest.value.mode} mode, which measures no spectrum; the last trace is from "
            f"{cached.value.time.isoformat()}. Take one with POST /api/v1/devices/{dev.id}/scan "
            '{"mode": "trace"}',
        )
    return JSONBytes(cached.json)
