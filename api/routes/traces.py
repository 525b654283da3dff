"""The trace archive over HTTP: list and fetch stored spectra, re-analyse one, the policy.

Traces stay on the agent that took them (they are not forwarded to InfluxDB): a
replica answers 404 naming the agent to ask (the device's ``agent_url``).

JSON shapes (plain, for the web console): a listing is ``{"device", "traces":
[{id, device, time, reason, points, rbw_ghz, scan_id, identity, temperature_c,
bytes}]}``; one trace adds ``frequency_thz[]`` and ``power_dbm[]`` (0.01 dB,
null below the floor).  ``format=csv`` is the CSV ``odpm analyze`` reads.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, HTTPException, Path, Query, Response, status
from pydantic import BaseModel, Field, ValidationError

from api.deps import DeviceDep, ReadAccess, ServiceDep, WriteAccess
from api.routes import error_responses, invalid
from api.routes.history import IsoTime, check_time
from api.schemas import StrictIn
from odpm.config import ArchivePolicy, ArchivePolicyOverride, PipelineConfig, PlanConfig
from odpm.models import TraceScan
from odpm.service import DeviceRuntime, Service
from odpm.storage.traces import StoredTrace, TraceArchive

#: A stored trace's id: a SQLite rowid (64-bit); larger numbers are 422, not an overflow.
TraceId = Annotated[int, Path(ge=1, le=2**63 - 1)]


class ArchivePolicyIn(StrictIn, ArchivePolicyOverride):
    """A device's archive policy changes, strictly typed (a boolean is not a number)."""


class TraceInfoOut(BaseModel):
    """A stored trace without its levels."""

    id: int
    device: str
    time: datetime
    reason: str = Field(description="periodic, manual, or alarm:<kind>:<channel>")
    points: int
    rbw_ghz: float
    scan_id: int | None = Field(description="the journal row of its reading")
    identity: str | None = Field(description="the device's *IDN? answer")
    temperature_c: float | None
    bytes: int = Field(description="what it counts against archive.max_bytes")


class TraceListOut(BaseModel):
    device: str
    traces: list[TraceInfoOut]


class StoredTraceOut(TraceInfoOut):
    frequency_thz: list[float]
    power_dbm: list[float | None] = Field(description="0.01 dB resolution; null below floor")


router = APIRouter(tags=["traces"], dependencies=[ReadAccess])
write_router = APIRouter(tags=["traces"], dependencies=[WriteAccess])

#: Most traces one listing returns.
MAX_LIST = 10_000


def archive_of(service: Service, dev: DeviceRuntime) -> TraceArchive:
    """The archive, or a 404 saying where the traces are (a replica has none)."""
    if service.traces is None:
        agent = dev.config.agent_url
        where = (
            f"ask the agent that acquires it: {agent}"
            if agent
            else ("ask the agent that acquires it (set the device's agent_url to name it here)")
        )
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            detail=f"traces of {dev.id!r} stay on the agent that took them; {where}",
        )
    return service.traces.archive


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


@router.get(
    "/devices/{device_id}/traces",
    responses={200: {"model": TraceListOut}, **error_responses(401, 403, 404)},
)
def list_traces(
    dev: DeviceDep,
    service: ServiceDep,
    start: Annotated[IsoTime | None, Query(description="ISO 8601, 1970..2200")] = None,
    end: Annotated[IsoTime | None, Query(description="ISO 8601, 1970..2200")] = None,
    reason: Annotated[
        str | None, Query(description="exact reason, or a prefix ending in * (alarm:*)")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 1000,
) -> dict[str, Any]:
    """Stored traces of a device, oldest first (time, reason, points, RBW, scan id)."""
    if start is not None:
        start = check_time("start", _utc(start))
    if end is not None:
        end = check_time("end", _utc(end))
    if start is not None and end is not None and end < start:
        raise invalid("query", "end", "must not be before start")
    archive = archive_of(service, dev)
    infos = archive.list_traces(
        dev.id,
        start=None if start is None else _utc(start),
        end=None if end is None else _utc(end),
        reason=reason,
        limit=limit,
    )
    return {"device": dev.id, "traces": [i.to_dict() for i in infos]}


def trace_response(trace: StoredTrace, fmt: str) -> Response:
    if fmt == "csv":
        name = f"{trace.info.device}-trace-{trace.info.id}.csv"
        return Response(
            trace.to_csv(),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    import json

    return Response(
        json.dumps(trace.to_dict(), allow_nan=False, separators=(",", ":")),
        media_type="application/json",
    )


def _stored(service: Service, dev: DeviceRuntime, trace_id: int) -> StoredTrace:
    got = archive_of(service, dev).get(trace_id, device=dev.id)
    if got is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, detail=f"no stored trace {trace_id} of device {dev.id!r}"
        )
    return got


@router.get(
    "/devices/{device_id}/traces/{trace_id}",
    response_class=Response,
    responses={
        200: {
            "model": StoredTraceOut,
            "description": "JSON, or with format=csv the CSV odpm analyze reads.",
            "content": {"text/csv": {}},
        },
        **error_responses(401, 403, 404),
    },
)
def get_trace(
    dev: DeviceDep,
    service: ServiceDep,
    trace_id: TraceId,
    format: Literal["json", "csv"] = "json",
) -> Response:
    """One stored trace: JSON, or ``format=csv`` for ``odpm analyze --rbw-ghz <rbw_ghz>``."""
    return trace_response(_stored(service, dev, trace_id), format)


def trace_at(
    service: Service, dev: DeviceRuntime, at: datetime, within_s: float | None = None
) -> Response:
    """The stored trace nearest ``at`` (for ``GET .../trace?at=``); 404 naming the nearest
    ones when none is within ``within_s`` seconds (None: any distance)."""
    archive = archive_of(service, dev)
    t = _utc(at)
    before, after = archive.nearest(dev.id, t)
    options = [i for i in (before, after) if i is not None]
    if not options:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, detail=f"no stored trace of device {dev.id!r}"
        )
    best = min(options, key=lambda i: abs((i.time - t).total_seconds()))
    far = within_s is not None and abs((best.time - t).total_seconds()) > within_s
    got = None if far else archive.get(best.id, device=dev.id)
    if got is None:  # too far, or pruned between the two reads
        nearest = ", ".join(f"id {i.id} at {i.time.isoformat()}" for i in options)
        window = f" within {within_s:g} s" if within_s is not None else ""
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            detail=f"no stored trace of {dev.id!r}{window} of {t.isoformat()}; nearest: {nearest}",
        )
    return trace_response(got, "json")


class AnalyzeIn(StrictIn):
    """Other pipeline settings to re-analyse a stored trace with (all optional)."""

    noise_method: Literal["midpoint", "pit"] | None = None
    noise_window_ghz: float | None = Field(None, gt=0, le=50)
    plan: PlanConfig | None = None


@router.post(
    "/devices/{device_id}/traces/{trace_id}/analyze", responses=error_responses(401, 403, 404)
)
def analyze_trace(
    dev: DeviceDep,
    service: ServiceDep,
    trace_id: TraceId,
    body: Annotated[AnalyzeIn | None, Body()] = None,
) -> dict[str, Any]:
    """Run today's pipeline on a stored trace (read-only: no key, no alarm state, nothing
    stored) with the device's settings or those given; returns the Reading."""
    from odpm.config import AlarmConfig, CalibrationConfig
    from odpm.pipeline import Pipeline

    trace = _stored(service, dev, trace_id)
    settings: dict[str, Any] = service.settings.pipeline.model_dump()
    if body is not None:
        for k in ("noise_method", "noise_window_ghz"):
            if getattr(body, k) is not None:
                settings[k] = getattr(body, k)
    try:
        config = PipelineConfig.model_validate(settings)
    except ValidationError as exc:
        raise invalid("body", "pipeline", str(exc.errors()[0]["msg"])) from None
    plan = (body.plan if body is not None and body.plan is not None else dev.config.plan).to_plan()
    pipeline = Pipeline(plan, config, AlarmConfig(), CalibrationConfig())
    scan = TraceScan(
        device_id=dev.id,
        time=trace.info.time,
        frequency_thz=trace.frequency_thz,
        power_dbm=trace.power_dbm,
        rbw_ghz=trace.info.rbw_ghz,
        temperature_c=trace.info.temperature_c,
    )
    try:
        reading = pipeline.process(scan)
    except ValueError as exc:
        raise invalid("body", "plan", str(exc)) from None
    out = reading.to_dict()
    out["trace_id"] = trace.info.id
    out["pipeline"] = config.model_dump()
    return out


@router.get("/devices/{device_id}/archive", responses=error_responses(401, 403, 404))
def get_policy(dev: DeviceDep, service: ServiceDep) -> dict[str, Any]:
    """The archive policy in force for this device."""
    archive_of(service, dev)
    assert service.traces is not None
    return service.traces.policy(dev.config).policy.model_dump()


@write_router.put("/devices/{device_id}/archive", responses=error_responses(400, 401, 403, 404))
def set_policy(dev: DeviceDep, service: ServiceDep, body: ArchivePolicyIn) -> dict[str, Any]:
    """Change this device's archive policy (fields left out or null are unchanged, except
    ``reference``, where null means none; key needed)."""
    archive_of(service, dev)
    assert service.traces is not None
    keeper = service.traces.policy(dev.config)
    changes = {
        k: v
        for k in body.model_fields_set
        if (v := getattr(body, k)) is not None or k == "reference"
    }
    try:
        policy = ArchivePolicy.model_validate({**keeper.policy.model_dump(), **changes})
    except ValidationError as exc:
        raise invalid("body", "archive", str(exc.errors()[0]["msg"])) from None
    keeper.set_policy(policy)
    service.reference_changed(dev.id)
    return policy.model_dump()
