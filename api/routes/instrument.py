"""A bench OSA's own analysis of its latest sweep beside odpm's (``instrument_analysis = true``).

The AQ6370 reports its WDM table (peak wavelength, level, OSNR by its own noise
algorithm); this route pairs each peak with odpm's values for the plan channel it
falls in, so the two analyses of the same sweep can be compared (odpm/instrument_analysis.py).
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, ConfigDict, Field

from api.deps import DeviceDep, ReadAccess, ServiceDep
from api.routes import error_responses
from odpm.instrument_analysis import compare

router = APIRouter(tags=["readings"], dependencies=[ReadAccess])


class InstrumentChannelOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: int | None = Field(description="Plan channel the peak falls in (null: off-plan).")
    frequency_thz: float = Field(description="Peak frequency (vacuum) the instrument reports.")
    power_dbm: float | None
    osnr_db: float | None = Field(description="OSNR as the instrument computed it.")
    odpm_signal_power_dbm: float | None
    odpm_osnr_db: float | None
    osnr_difference_db: float | None = Field(description="osnr_db - odpm_osnr_db.")


class InstrumentAnalysisOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    device: str
    time: datetime
    source: str
    reading_time: datetime | None = Field(description="Time of odpm's reading compared with.")
    channels: list[InstrumentChannelOut]


@router.get(
    "/devices/{device_id}/instrument-analysis",
    response_model=InstrumentAnalysisOut,
    responses=error_responses(401, 403, 404),
)
async def instrument_analysis(dev: DeviceDep, service: ServiceDep) -> InstrumentAnalysisOut:
    """The instrument's own channel table of its latest sweep, matched to odpm's reading."""
    found = service.instrument_analysis(dev.id)
    if found is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            detail=f"no instrument analysis from device {dev.id!r} (an AQ6370 with "
            "instrument_analysis = true provides one)",
        )
    when, analysis, reading = found
    return InstrumentAnalysisOut(
        device=dev.id,
        time=when,
        source=analysis.source,
        reading_time=reading.time if reading is not None else None,
        channels=[InstrumentChannelOut(**row) for row in compare(analysis, reading)],
    )
