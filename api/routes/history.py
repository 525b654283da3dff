"""Per-channel time series from storage: mean/min/max per bucket, JSON or CSV.

Parameters are checked here (channel in the device's plan, end after start,
``every`` a duration) and by the history store (``every`` below the data
resolution, too many buckets); every refusal is a 422 naming the parameter.
An unreachable store (InfluxDB down) is a 503.
"""

from __future__ import annotations

import csv
import io
import math
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, HTTPException, Path, Query, Response, status
from pydantic import BeforeValidator
from starlette.concurrency import run_in_threadpool

from api.deps import DeviceDep, ReadAccess, ServiceDep
from api.routes import error_responses, invalid
from api.schemas import HistoryOut, HistoryPointOut
from odpm.grid import MAX_PLAN_CHANNELS
from odpm.storage.history import (
    MIN_RAW_EVERY_S,
    MIN_ROLLUP_EVERY_S,
    RAW_RANGE_LIMIT_S,
    ChannelHistory,
    HistoryBackendError,
    HistoryQueryError,
)
from odpm.storage.journal import VALUE_DECIMALS, us_to_time

router = APIRouter(tags=["history"], dependencies=[ReadAccess])

#: Range used when ``start`` is not given.
DEFAULT_RANGE = timedelta(hours=1)
#: Buckets aimed for when ``every`` is not given (a plot's worth).
DEFAULT_BUCKETS = 500
#: No single request may span more than this (the journal keeps days, InfluxDB maybe years).
MAX_RANGE = timedelta(days=400)

#: Times accepted for ``start`` and ``end``: InfluxDB stores int64 nanoseconds since
#: 1970 (to 2262), the journal int64 microseconds; a time outside is a client error (422),
#: not a failed query shown as an outage (503) or an overflow (500).
EARLIEST_TIME = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_TIME = datetime(2200, 1, 1, tzinfo=UTC)
#: What ``every`` looks like (also declared in the schema): a number and a unit.  ASCII
#: classes, not ``\d``/``\s``: Python's match other scripts' digits, JSON Schema's do not.
EVERY_PATTERN = r"^ *[0-9]{1,9}(\.[0-9]{1,6})? *(us|ms|s|m|h|d)? *$"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(us|ms|s|m|h|d)?\s*$")
_UNIT_S = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_every_s(text: str) -> float:
    """``10s``, ``1m``, ``1h``, ``2d`` or a plain number of seconds."""
    m = _DURATION.match(text)
    if m is None:
        raise invalid("query", "every", f"not a duration like 10s, 1m or 1h: {text!r}")
    value = float(m.group(1)) * _UNIT_S[m.group(2) or "s"]
    if not math.isfinite(value) or value <= 0:
        raise invalid("query", "every", f"must be a positive duration, got {text!r}")
    if value > MAX_RANGE.total_seconds():
        raise invalid("query", "every", f"must be at most {MAX_RANGE.days} days, got {text!r}")
    return value


def _iso_8601_only(value: object) -> object:
    """Refuse what pydantic would read as a Unix time (``end=0.5``): the parameter is
    documented as an ISO 8601 string, and a number is more likely a mistake."""
    if isinstance(value, str) and not _ISO_DATE.match(value):
        raise ValueError(f"not an ISO 8601 time like 2024-05-01T08:00:00Z: {value!r}")
    return value


_ISO_DATE = re.compile(r"^ *[0-9]{4}-[0-9]{2}-[0-9]{2}")
#: A ``start``/``end`` query value: ISO 8601 only.
IsoTime = Annotated[datetime, BeforeValidator(_iso_8601_only)]


def check_time(name: str, t: datetime) -> datetime:
    """``t`` if it lies in EARLIEST_TIME..LATEST_TIME, else the 422 naming ``name``."""
    if not EARLIEST_TIME <= t <= LATEST_TIME:
        raise invalid(
            "query",
            name,
            f"must be between {EARLIEST_TIME:%Y-%m-%d} and {LATEST_TIME:%Y-%m-%d}, "
            f"got {t.isoformat()}",
        )
    return t


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def default_every_s(span_s: float) -> float:
    """About :data:`DEFAULT_BUCKETS` buckets, at a resolution the store accepts."""
    unit = MIN_ROLLUP_EVERY_S if span_s > RAW_RANGE_LIMIT_S else MIN_RAW_EVERY_S
    return max(1, math.ceil(span_s / DEFAULT_BUCKETS / unit)) * unit


_COLUMNS = tuple(f"{q}_{stat}" for q in ("power_dbm", "osnr_db") for stat in ("mean", "min", "max"))


def _points(h: ChannelHistory) -> list[dict[str, object]]:
    """Bucket rows, NaN -> None, rounded to the stored resolution, built column-wise."""
    # Means of stored values carry binary noise (-20.129299999999997): rounded to the
    # resolution values are stored with, which is all they mean.
    cols = {
        f"{q}_{stat}": np.round(getattr(getattr(h, q), stat), VALUE_DECIMALS).tolist()
        for q in ("power_dbm", "osnr_db")
        for stat in ("mean", "min", "max")
    }
    times = [us_to_time(t) for t in h.time_us.tolist()]
    samples = h.samples.tolist()
    rows: list[dict[str, object]] = []
    for i, t in enumerate(times):
        row: dict[str, object] = {"time": t, "samples": samples[i]}
        for name, values in cols.items():
            v = values[i]
            row[name] = None if v != v else v
        rows.append(row)
    return rows


@router.get(
    "/devices/{device_id}/channels/{ch}/history",
    response_model=HistoryOut,
    responses={
        200: {"content": {"text/csv": {"schema": {"type": "string"}}}},
        **error_responses(401, 403, 404, 503),
    },
)
async def channel_history(
    dev: DeviceDep,
    service: ServiceDep,
    ch: Annotated[
        int,
        Path(
            ge=1,
            le=MAX_PLAN_CHANNELS,
            description="Channel number in the device's plan (1..N); 404 beyond N.",
        ),
    ],
    start: Annotated[
        IsoTime | None,
        Query(
            description="ISO 8601, 1970..2200; naive means UTC (default: end - 1 h).",
        ),
    ] = None,
    end: Annotated[
        IsoTime | None, Query(description="ISO 8601, 1970..2200 (default: now).")
    ] = None,
    every: Annotated[
        str | None,
        Query(
            pattern=EVERY_PATTERN,
            max_length=24,
            description="Bucket width: 10s, 1m, 1h... up to 400 days (default: about 500 buckets).",
        ),
    ] = None,
    format: Annotated[Literal["json", "csv"], Query()] = "json",
) -> HistoryOut | Response:
    """power_dbm and osnr_db mean/min/max per bucket (raw points up to 3 h, else 1-min rollups)."""
    if not 1 <= ch <= dev.plan.count:
        # Within the schema's bounds but not in this device's plan: no such resource.
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            detail=f"ch: device {dev.id!r} has channels 1..{dev.plan.count}, not {ch}",
        )
    try:
        end_t = check_time("end", _utc(end)) if end is not None else datetime.now(UTC)
        start_t = check_time("start", _utc(start) if start is not None else end_t - DEFAULT_RANGE)
    except (OverflowError, ValueError) as exc:
        raise invalid("query", "start", f"not a usable time: {exc}") from None
    if end_t <= start_t:
        raise invalid("query", "end", f"must be after start ({start_t.isoformat()})")
    if end_t - start_t > MAX_RANGE:
        raise invalid(
            "query", "start", f"the range is longer than the {MAX_RANGE.days} days allowed"
        )
    span_s = (end_t - start_t).total_seconds()
    every_s = parse_every_s(every) if every is not None else default_every_s(span_s)
    try:
        history: ChannelHistory = await run_in_threadpool(
            service.channel_history, dev.id, ch, start_t, end_t, every_s
        )
    except HistoryQueryError as exc:
        message = str(exc).removeprefix(f"{exc.parameter}: ")
        raise invalid("query", exc.parameter, message) from None
    except HistoryBackendError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(exc)) from None
    points = _points(history)
    if format == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["time", "samples", *_COLUMNS])
        for p in points:
            w.writerow(
                [
                    p["time"].isoformat(),  # type: ignore[attr-defined]
                    p["samples"],
                    *("" if p[c] is None else repr(p[c]) for c in _COLUMNS),
                ]
            )
        name = f"{dev.id}_ch{ch:02d}.csv"
        return Response(
            buf.getvalue(),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    return HistoryOut(
        device=dev.id,
        channel=ch,
        start=start_t,
        end=end_t,
        every_s=history.every_s,
        source=history.source,
        points=[HistoryPointOut.model_validate(p) for p in points],
    )
