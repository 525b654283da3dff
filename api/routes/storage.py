"""Storage: the journal's backlog and quarantine, and requeueing refused batches.

``GET /storage`` is ``odpm storage status`` over HTTP (plus the live forwarder
state and the dropped-reading counters); ``POST /storage/requeue`` (API key)
is ``odpm storage requeue``.  Both read the journal in a worker thread.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Body
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from api.deps import ReadAccess, ServiceDep, WriteAccess
from api.routes import error_responses
from api.schemas import StrictIn, _whole_number
from odpm.service import NotAvailableError, Service
from odpm.storage.journal import Journal
from odpm.storage.report import StorageReport, storage_report

router = APIRouter(tags=["storage"])


class QuarantinedOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: int
    created: datetime
    first_scan_id: int | None
    last_scan_id: int | None
    status: int = Field(description="InfluxDB's HTTP status for the batch.")
    message: str = Field(description="InfluxDB's message: why it refused the batch.")
    line_count: int
    requeued: bool = Field(description="Waiting to be sent again.")
    first_line: str


class StorageStatusOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    journal: str
    used_bytes: int = Field(description="Journal size on disk (database + WAL).")
    max_bytes: int
    backlog_rows: int = Field(description="Scans not yet acknowledged by InfluxDB.")
    backlog_rollups: int
    oldest_unforwarded_age_s: float | None
    forwarder_state: str | None = Field(
        description="idle, sending, backoff, auth_failed, paused, stopped; null without one."
    )
    forwarder_error: str | None
    journal_fault: str | None = Field(description="Why the journal cannot be written, if so.")
    dropped_readings: dict[str, int] = Field(
        description="Readings lost since start, by reason (odpm_readings_dropped_total)."
    )
    quarantined_count: int
    quarantined: list[QuarantinedOut] = Field(description="Newest first, at most 100.")


#: A quarantined batch id (a whole number: ``3.0`` is taken, as JSON allows).
BatchId = Annotated[int, Field(ge=1, le=2**53 - 1), BeforeValidator(_whole_number)]


class RequeueAll(StrictIn):
    """``{"all": true}``: every quarantined batch."""

    all: Literal[True]


class RequeueIds(StrictIn):
    """``{"ids": [3, 4]}``: these batches."""

    ids: list[BatchId] = Field(min_length=1, max_length=10_000)


class RequeueOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    requeued: list[int] = Field(description="Batches marked to be sent again.")
    unknown: list[int] = Field(description="Ids that are not (or no longer) quarantined.")


def _journal(service: Service) -> Journal:
    if service.journal is None:
        raise NotAvailableError("this service has no journal (an InfluxDB replica)")
    return service.journal


@router.get(
    "/storage",
    response_model=StorageStatusOut,
    dependencies=[ReadAccess],
    responses=error_responses(401, 409),
)
async def storage_status(service: ServiceDep) -> StorageStatusOut:
    """Backlog, oldest unforwarded age, forwarder state, dropped readings and every
    quarantined batch with InfluxDB's message."""
    journal = _journal(service)
    rep: StorageReport = await asyncio.to_thread(storage_report, journal)
    st = service.storage_status()
    fault = journal.faults.current
    return StorageStatusOut(
        journal=rep.journal,
        used_bytes=rep.used_bytes,
        max_bytes=rep.max_bytes,
        backlog_rows=rep.backlog_rows,
        backlog_rollups=rep.backlog_rollups,
        oldest_unforwarded_age_s=rep.oldest_unforwarded_age_s,
        forwarder_state=st.forwarder_state,
        forwarder_error=st.forwarder_error,
        journal_fault=fault.describe() if fault is not None else None,
        dropped_readings=journal.faults.dropped(),
        quarantined_count=rep.quarantined_count,
        quarantined=[
            QuarantinedOut.model_validate(q, from_attributes=True) for q in rep.quarantined
        ],
    )


@router.post(
    "/storage/requeue",
    response_model=RequeueOut,
    dependencies=[WriteAccess],
    responses=error_responses(400, 401, 403, 409),
)
async def requeue(
    service: ServiceDep, body: Annotated[RequeueAll | RequeueIds, Body()]
) -> RequeueOut:
    """Send quarantined batches again (once their cause is fixed); the forwarder takes
    them within a second, and one refused again returns to quarantine."""
    journal = _journal(service)
    ids = list(body.ids) if isinstance(body, RequeueIds) else None
    done = await asyncio.to_thread(journal.requeue, ids)
    return RequeueOut(requeued=done, unknown=sorted(set(ids or ()) - set(done)))
