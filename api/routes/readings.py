"""The latest reading and the latest trace of a device, from the in-memory cache.

Both are sent as the bytes encoded once for that reading, so a dashboard
polling 200 devices costs a dictionary look-up per request.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from api.deps import DeviceDep, ReadAccess
from api.routes import JSONBytes, error_responses
from api.schemas import ReadingOut, TraceOut

router = APIRouter(tags=["readings"], dependencies=[ReadAccess])


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
async def trace(dev: DeviceDep) -> JSONBytes:
    cached = dev.trace
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
