"""OpenConfig view of a device's latest reading (see :mod:`odpm.openconfig`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, status

from api.deps import DeviceDep, ReadAccess
from api.routes import error_responses
from odpm.openconfig import channel_monitor

router = APIRouter(tags=["readings"], dependencies=[ReadAccess])


@router.get(
    "/devices/{device_id}/openconfig",
    responses={
        200: {
            "description": "openconfig-channel-monitor state (RFC 7951 JSON): per channel, "
            "lower and upper frequency (MHz) and power integrated over it (dBm, 2 decimals)."
        },
        **error_responses(401, 403, 404),
    },
)
async def openconfig(dev: DeviceDep) -> dict[str, Any]:
    cached = dev.latest
    if cached is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, detail=f"no reading from device {dev.id!r} yet"
        )
    return channel_monitor(dev.id, dev.plan, cached.value)
