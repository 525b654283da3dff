"""Reference ("golden") traces and comparison against them.

``PUT /devices/{id}/references/{name}`` (key) stores a reference from a stored
trace (``{"trace_id": N}``) or from an uploaded CSV in the format ``odpm analyze``
reads (``{"csv": "...", "rbw_ghz": 6.25}``); ``GET /devices/{id}/references``
lists them; ``GET /devices/{id}/compare?reference=NAME[&trace_id=N]`` compares a
stored trace (default: the newest) with it (:mod:`odpm.compare`).
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path as FilePath
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Response, status
from pydantic import BaseModel, Field

from api.deps import DeviceDep, ReadAccess, ServiceDep, WriteAccess
from api.routes import error_responses, invalid
from api.routes.traces import archive_of
from api.schemas import StrictIn
from odpm.compare import compare_spectra
from odpm.errors import UserError
from odpm.report import ReportError, render_report
from odpm.service import DeviceRuntime, Service
from odpm.storage.traces import ReferenceTrace, StoredTrace
from odpm.tracefile import read_trace_file

router = APIRouter(tags=["references"], dependencies=[ReadAccess])
write_router = APIRouter(tags=["references"], dependencies=[WriteAccess])

RefName = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
#: Largest CSV accepted as a reference upload (a 100k-point trace is ~3 MB).
MAX_CSV_BYTES = 8_000_000


class ReferenceIn(StrictIn):
    """Either ``trace_id`` (a stored trace of this device) or ``csv`` with ``rbw_ghz``."""

    trace_id: int | None = Field(None, ge=1, le=2**63 - 1)
    csv: str | None = Field(None, max_length=MAX_CSV_BYTES)
    rbw_ghz: float | None = Field(None, gt=0, le=1000)


class ReferenceOut(BaseModel):
    device: str
    name: str
    created: str
    time: str = Field(description="when the spectrum was measured")
    source: str = Field(description="trace:<id> or csv")
    rbw_ghz: float
    points: int


class ReferenceListOut(BaseModel):
    device: str
    default: str | None = Field(description="archive.reference of the device")
    references: list[ReferenceOut]


class CompareChannelOut(BaseModel):
    channel: int
    frequency_thz: float
    status: Literal["both", "new", "missing", "dark"]
    power_dbm: float | None
    reference_power_dbm: float | None
    power_delta_db: float | None
    osnr_db: float | None
    reference_osnr_db: float | None
    osnr_delta_db: float | None
    offset_ghz: float | None
    reference_offset_ghz: float | None
    offset_drift_ghz: float | None


class SpectrumDifferenceOut(BaseModel):
    frequency_thz: list[float]
    difference_db: list[float | None] = Field(description="trace - reference, dB")


class CompareOut(BaseModel):
    device: str
    reference: ReferenceOut
    trace: dict[str, Any] = Field(description="the stored trace compared (as in the listing)")
    channels: list[CompareChannelOut]
    new_channels: list[int]
    missing_channels: list[int]
    spectrum: SpectrumDifferenceOut


@router.get(
    "/devices/{device_id}/references",
    responses={200: {"model": ReferenceListOut}, **error_responses(401, 403, 404)},
)
def list_references(dev: DeviceDep, service: ServiceDep) -> dict[str, Any]:
    """The named reference traces of a device, and the default one (``archive.reference``)."""
    archive = archive_of(service, dev)
    assert service.traces is not None
    return {
        "device": dev.id,
        "default": service.traces.policy(dev.config).policy.reference,
        "references": archive.references(dev.id),
    }


class ReferenceTraceOut(ReferenceOut):
    frequency_thz: list[float]
    power_dbm: list[float | None] = Field(description="0.01 dB resolution; null below floor")


@router.get(
    "/devices/{device_id}/references/{name}",
    responses={200: {"model": ReferenceTraceOut}, **error_responses(401, 403, 404)},
)
def get_reference(dev: DeviceDep, service: ServiceDep, name: RefName) -> dict[str, Any]:
    """One reference with its levels (to overlay it on a spectrum, e.g. in the console)."""
    ref = reference_of(service, dev, name)
    power = [None if p != p else round(p, 2) for p in ref.power_dbm.tolist()]
    return {
        **ref.summary(),
        "frequency_thz": ref.frequency_thz.tolist(),
        "power_dbm": power,
    }


def _from_csv(text: str) -> tuple[Any, Any]:
    with tempfile.TemporaryDirectory(prefix="odpm-ref-") as tmp:
        path = FilePath(tmp) / "upload.csv"
        path.write_text(text, encoding="utf-8")
        try:
            got = read_trace_file(path)
        except UserError as exc:
            raise invalid("body", "csv", str(exc).replace(str(path), "uploaded CSV")) from None
    return got.frequency_thz, got.power_dbm


@write_router.put(
    "/devices/{device_id}/references/{name}",
    responses={200: {"model": ReferenceOut}, **error_responses(400, 401, 403, 404)},
)
def put_reference(
    dev: DeviceDep, service: ServiceDep, name: RefName, body: ReferenceIn
) -> dict[str, Any]:
    """Create or replace a named reference from a stored trace or an uploaded CSV."""
    archive = archive_of(service, dev)
    if (body.trace_id is None) == (body.csv is None):
        raise invalid("body", "trace_id", "give either trace_id or csv (with rbw_ghz)")
    if body.trace_id is not None:
        trace = archive.get(body.trace_id, device=dev.id)
        if trace is None:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND,
                detail=f"no stored trace {body.trace_id} of device {dev.id!r}",
            )
        ref = archive.put_reference(
            dev.id,
            name,
            time=trace.info.time,
            frequency_thz=trace.frequency_thz,
            power_dbm=trace.power_dbm,
            rbw_ghz=trace.info.rbw_ghz,
            source=f"trace:{trace.info.id}",
        )
    else:
        if body.rbw_ghz is None:
            raise invalid("body", "rbw_ghz", "required with csv (the RBW of each point, GHz)")
        freq, power = _from_csv(body.csv or "")
        ref = archive.put_reference(
            dev.id,
            name,
            time=datetime.now(UTC),
            frequency_thz=freq,
            power_dbm=power,
            rbw_ghz=body.rbw_ghz,
            source="csv",
        )
    service.reference_changed(dev.id)
    return ref.summary()


def reference_of(service: Service, dev: DeviceRuntime, name: str | None) -> ReferenceTrace:
    """The named reference, or the device's default; 404 naming what is missing."""
    archive = archive_of(service, dev)
    assert service.traces is not None
    name = name or service.traces.policy(dev.config).policy.reference
    if not name:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            detail=f"no reference given and device {dev.id!r} has no default (archive.reference)",
        )
    ref = archive.reference(dev.id, name)
    if ref is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, detail=f"device {dev.id!r} has no reference {name!r}"
        )
    return ref


def trace_of(service: Service, dev: DeviceRuntime, trace_id: int | None) -> StoredTrace:
    """A stored trace of the device, or its newest; 404 if there is none."""
    archive = archive_of(service, dev)
    got = archive.latest(dev.id) if trace_id is None else archive.get(trace_id, device=dev.id)
    if got is None:
        what = "no stored trace" if trace_id is None else f"no stored trace {trace_id}"
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"{what} of device {dev.id!r}")
    return got


@router.get(
    "/devices/{device_id}/compare",
    responses={200: {"model": CompareOut}, **error_responses(401, 403, 404)},
)
def compare(
    dev: DeviceDep,
    service: ServiceDep,
    reference: str | None = None,
    trace_id: int | None = None,
) -> dict[str, Any]:
    """Per channel power delta, OSNR delta and offset drift against a reference, the new
    and missing channels, and the spectrum difference (dB, on the trace's axis)."""
    ref = reference_of(service, dev, reference)
    trace = trace_of(service, dev, trace_id)
    result = compare_spectra(
        dev.plan,
        service.settings.pipeline,
        trace=(trace.frequency_thz, trace.power_dbm, trace.info.rbw_ghz),
        reference=(ref.frequency_thz, ref.power_dbm, ref.rbw_ghz),
    )
    return {
        "device": dev.id,
        "reference": ref.summary(),
        "trace": trace.info.to_dict(),
        **result.to_dict(),
    }


_REPORT_TYPES = {"html": "text/html; charset=utf-8", "json": "application/json", "csv": "text/csv"}


@router.get(
    "/devices/{device_id}/report",
    response_class=Response,
    responses={
        200: {"description": "The commissioning report (HTML with embedded SVG, JSON or CSV)."},
        **error_responses(401, 403, 404),
    },
)
def report(
    dev: DeviceDep,
    service: ServiceDep,
    format: Literal["html", "json", "csv"] = "html",
    reference: str | None = None,
    trace_id: int | None = None,
) -> Response:
    """Pass/fail per channel and per device for a stored trace (default: the newest), against
    the thresholds in force and the reference (default: the device's, if it has one)."""
    archive = archive_of(service, dev)
    assert service.traces is not None
    name = reference or service.traces.policy(dev.config).policy.reference
    try:
        body = render_report(
            archive,
            dev.config,
            pipeline=service.settings.pipeline,
            alarms=service.alarm_config,
            trace_id=trace_id,
            reference=name,
            fmt=format,
        )
    except ReportError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from None
    headers = {}
    if format != "json":
        ext = "html" if format == "html" else "csv"
        headers["Content-Disposition"] = f'inline; filename="{dev.id}-report.{ext}"'
    return Response(body, media_type=_REPORT_TYPES[format], headers=headers)
