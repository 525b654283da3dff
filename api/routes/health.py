"""Liveness and readiness: 200 when ready, 503 (same body) when not."""

from __future__ import annotations

import time

from fastapi import APIRouter, Response, status

from api.deps import ProbeDetails, ServiceDep
from api.schemas import HealthOut, HealthStatusOut, StorageOut

router = APIRouter(tags=["health"])


@router.get(
    "/health",
    response_model=HealthOut | HealthStatusOut,
    responses={
        503: {"model": HealthOut | HealthStatusOut, "description": "Not ready (see reasons)."}
    },
)
async def health(
    service: ServiceDep, response: Response, details: ProbeDetails
) -> HealthOut | HealthStatusOut:
    """Device states, storage backlog and InfluxDB reachability; never waits on a device.

    With ``api.read_requires_key``, a request without the key gets the status
    alone (enough for an orchestrator's probe); the details need the key.
    """
    ready, reasons = service.readiness()
    if not ready:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    if not details:
        return HealthStatusOut(status="ok" if ready else "not_ready")
    st = service.storage_status()
    started = service.started_at
    return HealthOut(
        status="ok" if ready else "not_ready",
        ready=ready,
        reasons=reasons,
        uptime_s=0.0 if started is None else round(time.monotonic() - started, 3),
        acquisition=service.acquisition,
        devices={d.id: d.snapshot().state for d in service.devices.values()},
        storage=StorageOut(
            journal_open=st.journal_open,
            backlog_rows=st.backlog_rows,
            oldest_unforwarded_age_s=st.oldest_unforwarded_age_s,
            forwarded_rows=st.forwarded_rows,
            forwarder_state=st.forwarder_state,
            forwarder_error=st.forwarder_error,
            influx_configured=st.influx_configured,
            influx_reachable=st.influx_reachable,
        ),
    )
