"""Devices: configuration, cached identity, worker state and counters."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import DeviceDep, ReadAccess, ServiceDep
from api.routes import error_responses
from api.schemas import CountersOut, DeviceOut
from odpm.service import DeviceSnapshot

router = APIRouter(tags=["devices"], dependencies=[ReadAccess])


def device_out(snap: DeviceSnapshot) -> DeviceOut:
    return DeviceOut(
        id=snap.id,
        driver=snap.driver,
        address=snap.address,
        identity=snap.identity,
        state=snap.state,
        mode=snap.mode,
        interval_s=snap.interval_s,
        averaging=snap.averaging,
        enabled=snap.enabled,
        channels=snap.channels,
        last_scan_time=snap.last_scan_time,
        last_error=snap.last_error,
        last_error_at=snap.last_error_at,
        counters=CountersOut(**snap.counters),
        readings_stored=snap.readings_stored,
        processing_errors=snap.processing_errors,
    )


@router.get("/devices", response_model=list[DeviceOut], responses=error_responses(401, 403))
async def list_devices(service: ServiceDep) -> list[DeviceOut]:
    return [device_out(d.snapshot()) for d in service.devices.values()]


@router.get(
    "/devices/{device_id}", response_model=DeviceOut, responses=error_responses(401, 403, 404)
)
async def get_device(dev: DeviceDep) -> DeviceOut:
    return device_out(dev.snapshot())
