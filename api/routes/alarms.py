"""Alarm states (from the service's memory) and recent raise/clear events (from storage).

An unreachable InfluxDB (on a replica) is a 503, mapped once in :mod:`api.app`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status

from api.deps import ReadAccess, ServiceDep
from api.routes import error_responses
from api.schemas import AlarmEventOut, AlarmsOut
from odpm.models import AlarmEvent

router = APIRouter(tags=["alarms"], dependencies=[ReadAccess])


def alarm_out(e: AlarmEvent) -> AlarmEventOut:
    return AlarmEventOut.model_validate(e.to_dict())


@router.get("/alarms", response_model=AlarmsOut, responses=error_responses(401, 403, 404, 503))
def alarms(
    service: ServiceDep,
    active: Annotated[bool, Query(description="Only active alarms (no recent events).")] = False,
    device: Annotated[str | None, Query(description="Only this device.")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000, description="Recent events to return.")] = 100,
) -> AlarmsOut:
    if device is not None and device not in service.devices:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"unknown device {device!r}")
    current = [alarm_out(e) for e in service.active_alarms(device)]
    recent = [] if active else [alarm_out(e) for e in service.recent_alarm_events(device, limit)]
    return AlarmsOut(active=current, recent=recent)
