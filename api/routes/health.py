"""Health: ``/health`` is the readiness answer, ``/health/live`` the liveness one.

``/health`` says ``ok``, ``degraded`` or ``down`` with reasons (built by
:func:`odpm.health.assess`): 200 for ok and degraded, 503 (same body) for down.
``/health/live`` answers 200 whenever the HTTP server's event loop runs; a
liveness probe uses it, so a degraded service (InfluxDB away, a device silent,
a full disk) is never restarted for something a restart cannot fix.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Response, status

from api.deps import ProbeDetails, ServiceDep
from api.schemas import HealthOut, HealthStatusOut, LiveOut, StorageOut

router = APIRouter(tags=["health"])


@router.get(
    "/health",
    response_model=HealthOut | HealthStatusOut,
    responses={503: {"model": HealthOut | HealthStatusOut, "description": "Down (see reasons)."}},
)
async def health(
    service: ServiceDep, response: Response, details: ProbeDetails
) -> HealthOut | HealthStatusOut:
    """ok / degraded / down with reasons, device states, storage backlog and InfluxDB
    reachability; 503 only when down.  Never waits on a device or on InfluxDB.

    With ``api.read_requires_key``, a request without the key gets the status
    alone (enough for an orchestrator's probe); the details need the key.
    """
    h = service.health()
    if not h.ready:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    if not details:
        return HealthStatusOut(status=h.status)
    st = service.storage_status()
    started = service.started_at
    return HealthOut(
        status=h.status,
        ready=h.ready,
        reasons=h.reasons,
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


@router.get("/health/live", response_model=LiveOut)
async def live(details: ProbeDetails) -> LiveOut:
    """Liveness: 200 as long as the server answers at all (use /health for readiness).

    A probe like /health (``details`` only marks it so): open even when reads need a key.
    """
    return LiveOut(status="alive")
