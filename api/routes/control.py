"""Writes: take a scan now, change acquisition (API key needed; thresholds: ``thresholds``)."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Body, HTTPException, status

from api.deps import DeviceDep, ServiceDep, WriteAccess
from api.routes import JSONBytes, error_responses
from api.routes.devices import device_out
from api.schemas import AcquisitionIn, DeviceOut, ReadingOut, ScanIn
from odpm.service import NotAvailableError

router = APIRouter(tags=["control"], dependencies=[WriteAccess])

#: POST /scan waits this long beyond the device's own timeout (a trace takes a while).
SCAN_GRACE_S = 5.0


@router.post(
    "/devices/{device_id}/scan",
    response_class=JSONBytes,
    responses={
        200: {"model": ReadingOut, "description": "The reading of the scan just taken."},
        **error_responses(400, 401, 403, 404, 409, 504),
    },
)
async def scan_now(
    dev: DeviceDep, service: ServiceDep, body: Annotated[ScanIn | None, Body()] = None
) -> JSONBytes:
    """The one endpoint that talks to a device: the worker takes the scan on its own
    thread (between its scheduled scans); the reading is stored and published like
    any other.  The event loop only awaits the worker's future."""
    try:
        future = service.request_reading(dev.id, body.mode if body else None)
    except NotAvailableError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
    except ValueError as exc:  # a mode the driver lacks (a bench OSA has no power mode)
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=str(exc)) from None
    timeout_s = dev.config.timeout_s * 2 + SCAN_GRACE_S
    try:
        scan, reading = await asyncio.wait_for(asyncio.wrap_future(future), timeout_s)
    except TimeoutError:
        future.cancel()
        raise HTTPException(
            status.HTTP_504_GATEWAY_TIMEOUT,
            detail=f"device {dev.id!r} did not deliver a scan within {timeout_s:g} s",
        ) from None
    except Exception as exc:
        raise HTTPException(
            status.HTTP_504_GATEWAY_TIMEOUT, detail=f"device {dev.id!r}: scan failed: {exc}"
        ) from None
    # The worker hands the scan to the service (pipeline, journal, streams)
    # before it resolves the future, so the reading is already stored.
    if reading is None:
        raise HTTPException(
            status.HTTP_504_GATEWAY_TIMEOUT,
            detail=f"device {dev.id!r}: the scan could not be analysed or stored (see the log)",
        )
    # archive.on_demand: the trace of a requested scan is kept (``manual``).
    await asyncio.to_thread(service.keep_manual_trace, dev.id, scan)
    return JSONBytes(reading.json)


@router.put(
    "/devices/{device_id}/acquisition",
    response_model=DeviceOut,
    responses=error_responses(400, 401, 403, 404, 409),
)
def set_acquisition(dev: DeviceDep, service: ServiceDep, body: AcquisitionIn) -> DeviceOut:
    """Start/stop, mode, interval and averaging; fields left out are unchanged."""
    try:
        snap = service.reconfigure(
            dev.id,
            running=body.running,
            mode=body.mode,
            interval_s=body.interval_s,
            averaging=body.averaging,
        )
    except NotAvailableError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
    except ValueError as exc:  # a mode the driver lacks (a bench OSA has no power mode)
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=str(exc)) from None
    return device_out(snap)
