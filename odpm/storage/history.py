"""History queries: one interface, two stores (the journal and InfluxDB), one semantics.

A query names a device (and a channel, or all channels), a time range
``[start, end)`` and a resolution ``every``.  Buckets are ``every`` long, aligned
to multiples of ``every`` since the epoch (not to ``start``); a bucket appears only
if it holds data, and holds only data inside the range.  Per bucket:

* ``samples``: number of scans in the bucket (raw), or the sum of the rollups'
  ``samples`` (1-minute data);
* ``power_dbm`` and ``osnr_db``: mean, min and max over the values that exist
  (missing values, e.g. the OSNR of a port reading, are skipped, not zero).

Ranges up to :data:`RAW_RANGE_LIMIT_S` read raw points; longer ranges read the
1-minute rollups (``channel_1m``), where the mean of a bucket is the mean of
its minute means (what InfluxQL's ``mean(power_dbm_mean)`` computes, so Grafana
and the API agree).  Both implementations below follow these rules and the
tests check them against the same readings.

Bad parameters raise :class:`HistoryQueryError` subclasses (``ValueError``)
whose ``parameter`` names the culprit; the API turns them into 422.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol, cast

import httpx
import numpy as np
import numpy.typing as npt

from odpm.config import InfluxConfig
from odpm.grid import ChannelPlan
from odpm.models import AlarmEvent, AlarmKind, ClearReason, Mode, OsnrMethod, Quality, Reading
from odpm.storage.influx_writers import v1_auth
from odpm.storage.journal import (
    ROLLUP_PERIOD_US,
    ROLLUP_VALUE_COLUMNS,
    Journal,
    aggregate_buckets,
    time_to_us,
    us_to_time,
)
from odpm.storage.lineprotocol import (
    ALL_CHANNELS_TAG,
    CHANNEL_FLOAT_FIELDS,
    MEASUREMENT_ALARM,
    MEASUREMENT_CHANNEL,
    MEASUREMENT_CHANNEL_1M,
    MEASUREMENT_SCAN,
    channel_tag,
)

log = logging.getLogger(__name__)

#: Ranges longer than this are answered from 1-minute rollups (3 hours).
RAW_RANGE_LIMIT_S = 3 * 3600.0
#: Finest ``every`` on raw points.
MIN_RAW_EVERY_S = 1.0
#: Finest ``every`` on rollups: their own period.
MIN_ROLLUP_EVERY_S = ROLLUP_PERIOD_US / 1e6
#: Most buckets one query may return (per channel).
MAX_BUCKETS = 10_000

Source = Literal["raw", "channel_1m"]


class HistoryQueryError(ValueError):
    """A history query parameter is invalid; ``parameter`` names it."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter


class InvalidRangeError(HistoryQueryError):
    """``end`` is not after ``start``."""


class ResolutionTooFineError(HistoryQueryError):
    """``every`` is below what the data behind the range resolves."""


class TooManyBucketsError(HistoryQueryError):
    """``(end - start) / every`` exceeds :data:`MAX_BUCKETS`."""


class InvalidChannelError(HistoryQueryError):
    """The channel number is out of range."""


class HistoryBackendError(RuntimeError):
    """The store could not answer (InfluxDB down, query error)."""


@dataclass(frozen=True, slots=True)
class Aggregates:
    """mean/min/max per bucket; NaN where the bucket had no value of this quantity."""

    mean: npt.NDArray[np.float64]
    min: npt.NDArray[np.float64]
    max: npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class ChannelHistory:
    device: str
    channel: int
    source: Source
    every_s: float
    #: Bucket starts, µs since the Unix epoch.
    time_us: npt.NDArray[np.int64]
    samples: npt.NDArray[np.int64]
    power_dbm: Aggregates
    osnr_db: Aggregates

    def __len__(self) -> int:
        return int(self.time_us.size)

    def to_dict(self) -> dict[str, Any]:
        """JSON shape (NaN -> null) for the API."""

        def clean(a: npt.NDArray[np.float64]) -> list[float | None]:
            return [None if math.isnan(v) else v for v in a.tolist()]

        return {
            "device": self.device,
            "channel": self.channel,
            "source": self.source,
            "every_s": self.every_s,
            "time": [us_to_time(t).isoformat() for t in self.time_us.tolist()],
            "samples": self.samples.tolist(),
            **{
                f"{q}_{stat}": clean(getattr(getattr(self, q), stat))
                for q in ("power_dbm", "osnr_db")
                for stat in ("mean", "min", "max")
            },
        }


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    """A validated query: integer µs throughout, source chosen."""

    device: str
    start_us: int
    end_us: int
    every_us: int
    source: Source

    @property
    def offset_us(self) -> int:
        """InfluxQL's GROUP BY time offset: 0, buckets are whole multiples of ``every``
        since the epoch (see :meth:`bucket_of`)."""
        return 0

    def bucket_of(self, t_us: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Bucket starts aligned to the bucket width (10:00:00, 10:01:00 for ``1m``), not
        to the request's ``start`` (10:00:17, 10:01:17): the same buckets whoever asks,
        and what Grafana's ``GROUP BY time()`` draws.  The first bucket may therefore
        start before ``start``; it holds only data from ``start`` on."""
        return t_us // self.every_us * self.every_us


def plan_query(
    device: str, start: datetime, end: datetime, every: timedelta | float
) -> HistoryQuery:
    """Validate a query and choose raw points or rollups (see the module docstring)."""
    if not device:
        raise HistoryQueryError("device", "must not be empty")
    start_us = time_to_us(start)
    end_us = time_to_us(end)
    if end_us <= start_us:
        raise InvalidRangeError(
            "end", f"must be after start ({end.isoformat()} <= {start.isoformat()})"
        )
    every_s = every.total_seconds() if isinstance(every, timedelta) else float(every)
    if not math.isfinite(every_s) or every_s <= 0:
        raise ResolutionTooFineError("every", f"must be a positive duration, got {every_s} s")
    span_s = (end_us - start_us) / 1e6
    source: Source = "channel_1m" if span_s > RAW_RANGE_LIMIT_S else "raw"
    if source == "raw" and every_s < MIN_RAW_EVERY_S:
        raise ResolutionTooFineError(
            "every", f"must be at least {MIN_RAW_EVERY_S:g} s, got {every_s:g} s"
        )
    if source == "channel_1m" and (every_s < MIN_ROLLUP_EVERY_S or every_s % MIN_ROLLUP_EVERY_S):
        raise ResolutionTooFineError(
            "every",
            f"ranges over {RAW_RANGE_LIMIT_S / 3600:g} h use 1-minute rollups: every must be "
            f"a whole number of minutes, got {every_s:g} s",
        )
    every_us = round(every_s * 1e6)
    buckets = math.ceil((end_us - start_us) / every_us)
    if buckets > MAX_BUCKETS:
        raise TooManyBucketsError(
            "every",
            f"{every_s:g} s over {span_s:g} s gives {buckets} buckets; at most {MAX_BUCKETS}",
        )
    return HistoryQuery(device, start_us, end_us, every_us, source)


def _check_channel(channel: int) -> int:
    if not 1 <= int(channel) <= 96:
        raise InvalidChannelError("channel", f"must be 1..96, got {channel}")
    return int(channel)


class HistoryStore(Protocol):
    """What the API queries; :class:`JournalHistory` and :class:`InfluxHistory` implement it."""

    def channel_history(
        self, device: str, channel: int, start: datetime, end: datetime, every: timedelta | float
    ) -> ChannelHistory: ...

    def device_history(
        self, device: str, start: datetime, end: datetime, every: timedelta | float
    ) -> list[ChannelHistory]: ...


def _empty(q: HistoryQuery, channel: int) -> ChannelHistory:
    nan = np.zeros(0)
    return ChannelHistory(
        q.device,
        channel,
        q.source,
        q.every_us / 1e6,
        np.zeros(0, np.int64),
        np.zeros(0, np.int64),
        Aggregates(nan, nan, nan),
        Aggregates(nan, nan, nan),
    )


class JournalHistory:
    """History from the embedded journal (the default when no InfluxDB is configured)."""

    def __init__(self, journal: Journal) -> None:
        self._journal = journal

    def channel_history(
        self, device: str, channel: int, start: datetime, end: datetime, every: timedelta | float
    ) -> ChannelHistory:
        q = plan_query(device, start, end, every)
        ch = _check_channel(channel)
        got = self._query(q, ch)
        return got[0] if got else _empty(q, ch)

    def device_history(
        self, device: str, start: datetime, end: datetime, every: timedelta | float
    ) -> list[ChannelHistory]:
        return self._query(plan_query(device, start, end, every), None)

    def _query(self, q: HistoryQuery, only: int | None) -> list[ChannelHistory]:
        if q.source == "raw":
            raw = self._journal.channel_values_between(
                q.device, q.start_us, q.end_us, ("power_dbm", "osnr_db")
            )
            groups = [(t, ch, v, np.ones(t.size, np.int64)) for t, ch, v in raw]
        else:
            groups = self._journal.rollup_values_between(
                q.device,
                q.start_us,
                q.end_us,
                ROLLUP_VALUE_COLUMNS,
            )
        channels = sorted({int(c) for _, ch, _, _ in groups for c in ch.tolist()})
        if only is not None:
            channels = [c for c in channels if c == only]
        if not channels:
            return []
        if len(groups) == 1:
            t, ch, v, n = groups[0]
            idx = np.searchsorted(ch, channels) if _sorted(ch) else _index(ch, channels)
            return self._aggregate(q, channels, t, v[:, :, idx], n)
        out = []
        for c in channels:  # several channel plans in range: rare, merge per channel
            ts, vs, ns = [], [], []
            for t, ch, v, n in groups:
                hit = np.flatnonzero(ch == c)
                if hit.size:
                    ts.append(t)
                    vs.append(v[:, :, hit])
                    ns.append(n)
            t_all = np.concatenate(ts)
            order = np.argsort(t_all, kind="stable")
            out += self._aggregate(
                q,
                [c],
                t_all[order],
                np.concatenate(vs, axis=1)[:, order],
                np.concatenate(ns)[order],
            )
        return out

    def _aggregate(
        self,
        q: HistoryQuery,
        channels: list[int],
        t: npt.NDArray[np.int64],
        v: npt.NDArray[np.float64],
        n: npt.NDArray[np.int64],
    ) -> list[ChannelHistory]:
        buckets = q.bucket_of(t)
        keys, _, agg = aggregate_buckets(buckets, v)
        if t.size:
            starts = np.flatnonzero(np.r_[True, buckets[1:] != buckets[:-1]])
            samples = np.add.reduceat(n, starts)
        else:
            samples = np.zeros(0, np.int64)
        if q.source == "raw":
            p_mean, p_min, p_max = agg[0, 0], agg[0, 1], agg[0, 2]
            o_mean, o_min, o_max = agg[1, 0], agg[1, 1], agg[1, 2]
        else:
            # Rollup columns: mean of means, min of mins, max of maxes.
            p_mean, p_min, p_max = agg[0, 0], agg[1, 1], agg[2, 2]
            o_mean, o_min, o_max = agg[3, 0], agg[4, 1], agg[5, 2]
        return [
            ChannelHistory(
                q.device,
                c,
                q.source,
                q.every_us / 1e6,
                keys,
                samples.astype(np.int64),
                Aggregates(p_mean[:, i], p_min[:, i], p_max[:, i]),
                Aggregates(o_mean[:, i], o_min[:, i], o_max[:, i]),
            )
            for i, c in enumerate(channels)
        ]


def _sorted(a: npt.NDArray[np.int64]) -> bool:
    return bool(np.all(a[1:] > a[:-1]))


def _index(ch: npt.NDArray[np.int64], channels: list[int]) -> npt.NDArray[np.int64]:
    pos = {int(c): i for i, c in enumerate(ch.tolist())}
    return np.array([pos[c] for c in channels], dtype=np.int64)


def _influxql_string(value: str) -> str:
    """A single-quoted InfluxQL string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


#: The InfluxQL select lists, per source, in the order _from_rows reads them.
_RAW_SELECT = (
    'count("present"), mean("power_dbm"), min("power_dbm"), max("power_dbm"), '
    'mean("osnr_db"), min("osnr_db"), max("osnr_db")'
)
_ROLLUP_SELECT = (
    'sum("samples"), mean("power_dbm_mean"), min("power_dbm_min"), max("power_dbm_max"), '
    'mean("osnr_db_mean"), min("osnr_db_min"), max("osnr_db_max")'
)


def influxql_for(q: HistoryQuery, channel: int | None) -> str:
    """The InfluxQL that answers ``q`` (the same text works in Grafana)."""
    measurement = MEASUREMENT_CHANNEL if q.source == "raw" else MEASUREMENT_CHANNEL_1M
    select = _RAW_SELECT if q.source == "raw" else _ROLLUP_SELECT
    where = f'"device" = {_influxql_string(q.device)}'
    if channel is not None:
        where += f' AND "channel" = {_influxql_string(channel_tag(channel))}'
    group = f"time({q.every_us}u, {q.offset_us}u)"
    if channel is None:
        group += ', "channel"'
    return (
        f'SELECT {select} FROM "{measurement}" WHERE {where} '
        f"AND time >= {q.start_us}u AND time < {q.end_us}u GROUP BY {group} fill(none)"
    )


class InfluxHistory:
    """History from InfluxDB over InfluxQL ``/query`` (1.x, 2.x with a DBRP mapping, 3.x)."""

    def __init__(self, config: InfluxConfig, *, client: httpx.Client | None = None) -> None:
        if not config.url:
            raise ValueError("storage.influx.url is empty: no InfluxDB to query")
        headers, auth = v1_auth(config)
        self._client = client or httpx.Client(
            base_url=config.url, headers=headers, auth=auth, timeout=config.timeout_s
        )
        self._params = {"db": config.database, "epoch": "u"}
        if config.retention_policy:
            self._params["rp"] = config.retention_policy

    def close(self) -> None:
        self._client.close()

    def query(self, influxql: str) -> list[dict[str, Any]]:
        """Run InfluxQL; return the first statement's series (raising on errors)."""
        try:
            r = self._client.post("/query", data={**self._params, "q": influxql})
        except httpx.HTTPError as exc:
            raise HistoryBackendError(f"InfluxDB query failed: {exc}") from exc
        try:
            body = r.json()
        except json.JSONDecodeError:
            body = {}
        if r.status_code >= 300:
            raise HistoryBackendError(
                f"InfluxDB query failed: HTTP {r.status_code}: {body.get('error', r.text)[:500]}"
            )
        results = body.get("results") or [{}]
        if "error" in results[0]:
            raise HistoryBackendError(f"InfluxDB query failed: {results[0]['error']}")
        return list(results[0].get("series") or [])

    def channel_history(
        self, device: str, channel: int, start: datetime, end: datetime, every: timedelta | float
    ) -> ChannelHistory:
        q = plan_query(device, start, end, every)
        ch = _check_channel(channel)
        series = self.query(influxql_for(q, ch))
        return _from_series(q, ch, series[0]["values"]) if series else _empty(q, ch)

    def device_history(
        self, device: str, start: datetime, end: datetime, every: timedelta | float
    ) -> list[ChannelHistory]:
        q = plan_query(device, start, end, every)
        out = [
            _from_series(q, int(s["tags"]["channel"]), s["values"])
            for s in self.query(influxql_for(q, None))
        ]
        return sorted(out, key=lambda h: h.channel)

    # -- what an API replica (no journal of its own) rebuilds its cache from ----------

    def devices(self) -> list[str]:
        """Every device with a ``scan`` point in the database, sorted."""
        series = self.query(f'SHOW TAG VALUES FROM "{MEASUREMENT_SCAN}" WITH KEY = "device"')
        return sorted({str(row[1]) for s in series for row in s.get("values") or []})

    def latest(self, device: str, plan: ChannelPlan | None = None) -> Reading | None:
        """The device's newest reading as forwarded, or None if it has none.

        Two queries: the newest ``scan`` point (``last`` of ``lit_channels``,
        which is always written, selects the point; its other fields and its
        ``mode`` tag come from that same point), then the ``channel`` points at
        exactly that timestamp.  Pinning the timestamp matters: ``last()`` per
        field on its own would fill a value missing from the newest scan (the
        OSNR of a channel that just went dark) with an older scan's.

        What line protocol does not carry is rebuilt: ``frequency_thz`` from
        ``plan`` (the default plan when None; NaN for channels beyond it),
        ``quality`` from ``present``, the mode and whether OSNR exists (the
        pipeline's rules), and ``alarms`` is empty (events stay in ``alarm``).
        Each OSNR's ``osnr_method`` and ``osnr_uncertainty_db`` are read back as written.
        """
        dev = _influxql_string(device)
        scan_fields = ("total_power_dbm", "tilt_db", "flatness_db", "min_osnr_db", "temperature_c")
        series = self.query(
            'SELECT last("lit_channels"), '
            + ", ".join(f'"{f}"' for f in scan_fields)
            + f', "mode" FROM "{MEASUREMENT_SCAN}" WHERE "device" = {dev}'
        )
        if not series or not series[0].get("values"):
            return None
        time_us, lit, *scalars, mode = series[0]["values"][0]
        channels = self.query(
            'SELECT last("present"), '
            + ", ".join(f'"{f}"' for f in (*CHANNEL_FLOAT_FIELDS, *_PROVENANCE_FIELDS))
            + f' FROM "{MEASUREMENT_CHANNEL}" WHERE "device" = {dev} '
            f'AND time >= {int(time_us)}u AND time <= {int(time_us)}u GROUP BY "channel"'
        )
        rows = sorted(
            (int(s["tags"]["channel"]), s["values"][0][1:]) for s in channels if s.get("values")
        )
        return _reading_from_points(
            device, int(time_us), str(mode), int(lit), scalars, rows, plan or ChannelPlan()
        )

    def alarm_events(
        self, device: str | None = None, since: datetime | None = None, limit: int = 100
    ) -> list[AlarmEvent]:
        """Raise/clear events from the ``alarm`` measurement, newest first (the journal's
        ``alarm_events``, read from what every agent forwarded).

        One query over all series at once (tags selected as columns, no GROUP BY),
        so ``LIMIT`` bounds the whole answer, not each (device, channel, kind).
        """
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        where: list[str] = []
        if device is not None:
            where.append(f'"device" = {_influxql_string(device)}')
        if since is not None:
            where.append(f"time >= {time_to_us(since)}u")
        series = self.query(
            'SELECT "active", "value", "threshold", "reason", "device"::tag, "channel"::tag, '
            '"kind"::tag '
            f'FROM "{MEASUREMENT_ALARM}"'
            + (" WHERE " + " AND ".join(where) if where else "")
            + f" ORDER BY time DESC LIMIT {int(limit)}"
        )
        events = []
        for s in series:
            cols = {name: i for i, name in enumerate(s["columns"])}
            for row in s.get("values") or []:
                event = _alarm_event(
                    row[cols["device"]],
                    row[cols["channel"]],
                    row[cols["kind"]],
                    row[cols["time"]],
                    row[cols["active"]],
                    row[cols["value"]],
                    row[cols["threshold"]],
                    row[cols["reason"]] if "reason" in cols else None,
                )
                if event is not None:
                    events.append(event)
        return events

    def active_alarms(self, device: str | None = None) -> list[AlarmEvent]:
        """The alarms whose newest event is a raise: one raising event per
        (device, kind, channel).

        ``last("active")`` per series decides, with that same point's value and
        threshold.  No time bound and no event limit, so an alarm raised long ago
        and never cleared is still found; the answer is bounded by the number of
        series (devices x channels x kinds), not by the number of events.
        """
        where = f' WHERE "device" = {_influxql_string(device)}' if device is not None else ""
        series = self.query(
            f'SELECT last("active"), "value", "threshold" FROM "{MEASUREMENT_ALARM}"{where} '
            'GROUP BY "device", "channel", "kind"'
        )
        events = []
        for s in series:
            tags = s.get("tags") or {}
            for time_us, active, value, threshold in s.get("values") or []:
                event = _alarm_event(
                    tags.get("device"),
                    tags.get("channel"),
                    tags.get("kind"),
                    time_us,
                    active,
                    value,
                    threshold,
                )
                if event is not None and event.active:
                    events.append(event)
        return events


def _alarm_event(
    device: Any,
    channel: Any,
    kind: Any,
    time_us: Any,
    active: Any,
    value: Any,
    threshold: Any,
    reason: Any = None,
) -> AlarmEvent | None:
    """An :class:`AlarmEvent` from an ``alarm`` point (None, logged, if it is not one
    this version can read: a kind it does not know, a channel tag that is not a number).
    """
    try:
        return AlarmEvent(
            device_id=str(device),
            time=us_to_time(int(time_us)),
            kind=AlarmKind(kind),
            channel=None if channel == ALL_CHANNELS_TAG else int(channel),
            active=bool(active),
            value=None if value is None else float(value),
            threshold=None if threshold is None else float(threshold),
            reason=None if reason is None else ClearReason(reason),
        )
    except (TypeError, ValueError) as exc:
        log.warning(
            "skipping an alarm point that is not an odpm event (device=%r channel=%r kind=%r): %s",
            device,
            channel,
            kind,
            exc,
        )
        return None


#: Where each OSNR came from (issue 15), read back beside the values: written only for
#: channels that have them, so a missing field is "no method", not an error.
_PROVENANCE_FIELDS = ("osnr_method", "osnr_uncertainty_db")


def _osnr_method_code(label: Any) -> int:
    """The :class:`OsnrMethod` of a stored label (NONE for a missing or unknown one: a
    newer agent's method this version does not know is shown as no method, not an error)."""
    if not isinstance(label, str):
        return int(OsnrMethod.NONE)
    try:
        return int(OsnrMethod[label.upper()])
    except KeyError:
        return int(OsnrMethod.NONE)


def _nan_if_none(v: Any) -> float:
    return math.nan if v is None else float(v)


def _reading_from_points(
    device: str,
    time_us: int,
    mode: str,
    lit_channels: int,
    scalars: list[Any],
    rows: list[tuple[int, list[Any]]],
    plan: ChannelPlan,
) -> Reading:
    """A :class:`Reading` from one ``scan`` point and its ``channel`` points."""
    channel = np.array([c for c, _ in rows], dtype=np.int64)
    present = np.array([bool(v[0]) for _, v in rows], dtype=np.bool_)
    n_values = len(CHANNEL_FLOAT_FIELDS)
    values = np.array(
        [[_nan_if_none(x) for x in v[1 : 1 + n_values]] for _, v in rows], dtype=np.float64
    ).reshape(len(rows), n_values)
    power, signal, osnr, offset = values.T
    # Points written before issue 15 have neither field: the row is then shorter.
    method = np.array(
        [_osnr_method_code(v[1 + n_values] if len(v) > 1 + n_values else None) for _, v in rows],
        dtype=np.uint8,
    )
    uncertainty = np.array(
        [_nan_if_none(v[2 + n_values] if len(v) > 2 + n_values else None) for _, v in rows],
        dtype=np.float64,
    )
    plan_f = plan.frequencies_thz
    in_plan = (channel >= 1) & (channel <= plan.count)
    frequency = np.full(channel.size, math.nan)
    frequency[in_plan] = plan_f[channel[in_plan] - 1]
    # The pipeline's quality rules, from what was stored: dark when nothing was
    # detected; port readings cannot measure OSNR; a trace channel without OSNR
    # had its noise floor unresolved.
    if mode == "trace":
        lit_quality = np.where(np.isnan(osnr), Quality.NOISE_UNRESOLVED, Quality.OK)
    else:
        lit_quality = np.full(channel.size, Quality.POWER_ONLY)
    quality = np.where(present, lit_quality, Quality.DARK).astype(np.uint8)
    width = np.full(channel.size, math.nan)
    width[in_plan] = plan.widths_ghz[channel[in_plan] - 1]
    total, tilt, flatness, min_osnr, temperature = scalars
    return Reading(
        device_id=device,
        time=us_to_time(time_us),
        mode=cast(Mode, mode),
        channel=channel,
        frequency_thz=frequency,
        width_ghz=width,
        present=present,
        power_dbm=power.copy(),
        signal_power_dbm=signal.copy(),
        osnr_db=osnr.copy(),
        offset_ghz=offset.copy(),
        quality=quality,
        total_power_dbm=_nan_if_none(total),
        lit_channels=lit_channels,
        tilt_db=_nan_if_none(tilt),
        flatness_db=_nan_if_none(flatness),
        min_osnr_db=_nan_if_none(min_osnr),
        temperature_c=None if temperature is None else float(temperature),
        osnr_method=method if method.any() else None,
        osnr_uncertainty_db=uncertainty if method.any() else None,
    )


def _from_series(q: HistoryQuery, channel: int, values: list[list[Any]]) -> ChannelHistory:
    if not values:
        return _empty(q, channel)
    cols = np.array(
        [[math.nan if x is None else float(x) for x in row] for row in values], dtype=np.float64
    )
    return ChannelHistory(
        q.device,
        channel,
        q.source,
        q.every_us / 1e6,
        np.array([row[0] for row in values], dtype=np.int64),
        np.nan_to_num(cols[:, 1]).astype(np.int64),
        Aggregates(cols[:, 2], cols[:, 3], cols[:, 4]),
        Aggregates(cols[:, 5], cols[:, 6], cols[:, 7]),
    )
