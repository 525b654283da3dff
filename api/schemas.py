"""Response and request bodies of the HTTP API (pydantic), with units in field names.

The reading and trace shapes are the ones :meth:`odpm.models.Reading.to_dict`
and :func:`odpm.service.trace_dict` produce; the routes send those pre-encoded
bytes (encoded once per reading, not once per request) and these models
document them in OpenAPI, where a schemathesis run checks they agree.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal, get_args

from pydantic import AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field

from odpm.config import AlarmConfig
from odpm.grid import MAX_PLAN_CHANNELS
from odpm.models import AlarmKind, ClearReason, Quality

# Written out for the type checker; the assertion below keeps them in step with the enums.
QualityLabel = Literal["ok", "dark", "noise_unresolved", "power_only"]
OsnrMethodLabel = Literal["interpolation", "shoulder", "fit", "reference", "signal_off"]
AlarmKindValue = Literal[
    "los",
    "power_low",
    "power_high",
    "osnr_low",
    "offset_high",
    "total_power_low",
    "total_power_high",
    "deviation",
    "device_lost",
]
ClearReasonValue = Literal["not_measured", "threshold_off"]
assert set(get_args(QualityLabel)) == {q.label for q in Quality}
assert set(get_args(AlarmKindValue)) == {k.value for k in AlarmKind}
assert set(get_args(ClearReasonValue)) == {r.value for r in ClearReason}
ModeName = Literal["power", "trace", "stream"]


def _whole_number(value: object) -> object:
    """A float without a fraction as the int it is: JSON Schema counts ``80.0`` as an
    integer, so a strict model must too; ``80.5``, ``true`` and ``"80"`` stay errors."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _channel_key(value: object) -> object:
    """A JSON object key is a string: ``"12"`` names channel 12 (plain digits, no sign,
    no leading zero, as the ``propertyNames`` pattern of :data:`_CHANNEL_MAP_SCHEMA` says)."""
    if isinstance(value, str) and _CANONICAL_INT.fullmatch(value):
        return int(value)
    return value


_CANONICAL_INT = re.compile(r"[1-9][0-9]{0,3}")


# The bounds come before the validator so that the JSON schema states them
# (``minimum``/``maximum``); after it pydantic cannot, and writes ``ge``/``le``.
#: A channel number in a request body (strict, but ``80.0`` is 80).
ChannelNumber = Annotated[int, Field(ge=1, le=MAX_PLAN_CHANNELS), BeforeValidator(_whole_number)]
#: A channel number as the key of a JSON object.
ChannelKey = Annotated[int, Field(ge=1, le=MAX_PLAN_CHANNELS), BeforeValidator(_channel_key)]


class StrictIn(BaseModel):
    """Base of every request body: unknown fields and loose types are 422.

    Strict, because lax validation turns ``{"interval_s": false}`` into 0 (back-to-back
    scanning) and ``"5"`` into 5; only an int where a float is expected is taken as
    is (JSON has one number type), and a whole float where an int is (``80.0``).
    """

    model_config = ConfigDict(extra="forbid", strict=True)


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class ErrorOut(_Out):
    detail: str = Field(description="What went wrong, naming the parameter or resource.")


class CountersOut(_Out):
    scans: int
    errors: int
    reconnects: int
    crc_failures: int
    lost_frames: int


class DeviceOut(_Out):
    id: str
    driver: str
    address: str
    identity: str | None = Field(description="The device's *IDN? answer, once known.")
    state: str = Field(description="connecting, running, backoff, paused, stopped (or replica).")
    mode: ModeName
    interval_s: float
    averaging: int
    enabled: bool = Field(description="Whether acquisition is meant to run.")
    channels: int = Field(description="Channels in the device's channel plan.")
    last_scan_time: datetime | None
    last_error: str | None = Field(
        description="The current connection problem; null once the device works again."
    )
    last_error_at: datetime | None = Field(
        None, description="When the last error happened (kept after a reconnect)."
    )
    counters: CountersOut
    readings_stored: int
    processing_errors: int


class ChannelOut(_Out):
    channel: int
    frequency_thz: float
    width_ghz: float | None = Field(
        None,
        description="The channel's slot width in GHz (its slot is frequency_thz +/- "
        "width_ghz/2; ITU-T G.694.1 flex plans mix widths); null when unknown.",
    )
    present: bool
    power_dbm: float | None
    signal_power_dbm: float | None
    osnr_db: float | None = Field(description="OSNR referred to 0.1 nm (12.5 GHz).")
    offset_ghz: float | None
    quality: QualityLabel
    osnr_method: OsnrMethodLabel | None = Field(
        None, description="Which method produced osnr_db (null when there is none)."
    )
    osnr_uncertainty_db: float | None = Field(
        None, description="One-sigma uncertainty of osnr_db in dB (null when none)."
    )


class AlarmEventOut(_Out):
    device: str
    time: datetime
    kind: AlarmKindValue
    channel: int | None = Field(
        description="null for device-wide alarms (total power, device_lost)."
    )
    active: bool = Field(description="true when raised, false when cleared.")
    value: float | None = Field(
        description="The value that decided (device_lost: seconds without a scan); null on a "
        "not_measured clear."
    )
    threshold: float | None
    reason: ClearReasonValue | None = Field(
        None,
        description="On a clear that is not the value returning inside its limit: "
        "not_measured (the quantity is no longer measured: null OSNR/offset, a mode that "
        "cannot measure it, a dark channel) or threshold_off (its threshold was switched off).",
    )


class ReadingOut(_Out):
    device: str
    time: datetime
    mode: ModeName
    temperature_c: float | None
    channels: list[ChannelOut]
    total_power_dbm: float | None
    lit_channels: int
    tilt_db: float | None
    flatness_db: float | None
    min_osnr_db: float | None
    alarms: list[AlarmEventOut]


class TraceOut(_Out):
    device: str
    time: datetime = Field(description="When the spectrum was scanned (host UTC).")
    mode: Literal["trace"] = Field(description="The scan mode that produced it.")
    rbw_ghz: float = Field(description="Noise-equivalent bandwidth of each point.")
    temperature_c: float | None
    frequency_thz: list[float]
    power_dbm: list[float | None] = Field(description="null below the detection floor.")


class HistoryPointOut(_Out):
    time: datetime = Field(description="Start of the bucket.")
    samples: int
    power_dbm_mean: float | None
    power_dbm_min: float | None
    power_dbm_max: float | None
    osnr_db_mean: float | None
    osnr_db_min: float | None
    osnr_db_max: float | None


class HistoryOut(_Out):
    device: str
    channel: int
    start: datetime
    end: datetime
    every_s: float
    source: str = Field(description="raw points, or channel_1m rollups for long ranges.")
    points: list[HistoryPointOut]


class AlarmsOut(_Out):
    active: list[AlarmEventOut]
    recent: list[AlarmEventOut] = Field(description="Raise/clear events, newest first.")


class StorageOut(_Out):
    journal_open: bool
    backlog_rows: int | None
    oldest_unforwarded_age_s: float | None
    forwarded_rows: int | None
    forwarder_state: str | None
    forwarder_error: str | None
    influx_configured: bool
    influx_reachable: bool | None


class HealthStatusOut(_Out):
    """The health probe without a key when reads need one: the status alone."""

    status: Literal["ok", "degraded", "down"]


class HealthOut(_Out):
    status: Literal["ok", "degraded", "down"] = Field(
        description="ok; degraded (works, but something needs a person: see reasons); "
        "down (cannot store at all; HTTP 503)."
    )
    ready: bool = Field(description="Readiness: true unless status is down.")
    reasons: list[str] = Field(description="Why the status is not ok, one line each.")
    uptime_s: float
    acquisition: bool
    devices: dict[str, str] = Field(description="Worker state per device id.")
    storage: StorageOut


class LiveOut(_Out):
    status: Literal["alive"]


class AcquisitionIn(StrictIn):
    """Fields left out keep their current value."""

    running: bool | None = None
    mode: ModeName | None = None
    interval_s: float | None = Field(None, ge=0.0, le=86400)
    averaging: Annotated[int, Field(ge=1, le=64), BeforeValidator(_whole_number)] | None = None


class ScanIn(StrictIn):
    mode: Literal["power", "trace"] | None = Field(
        None, description="Scan mode for this one scan (default: the device's mode)."
    )


# --- alarm thresholds (GET / PUT / PATCH /thresholds) ----------------------------------


def _channel_key_pattern(count: int) -> str:
    """A regular expression matching exactly the decimal channel numbers 1..count
    (count < 1000): per number of digits, the ranges below count's leading digits."""
    text = str(count)
    alts: list[str] = []
    for digits in range(1, len(text)):  # every shorter number
        alts.append("[1-9]" + "[0-9]" * (digits - 1))
    # Same length as count: a smaller digit at position i after count's prefix...
    for i, d in enumerate(text):
        low = "1" if i == 0 else "0"
        if int(d) > int(low):
            hi = str(int(d) - 1)
            digit = low if hi == low else f"[{low}-{hi}]"
            alts.append(text[:i] + digit + "[0-9]" * (len(text) - i - 1))
    alts.append(text)  # ...or count itself
    return "^(?:" + "|".join(alts) + ")$"


#: OpenAPI for a map keyed by channel number: JSON keys are strings, these are integers
#: 1..MAX_PLAN_CHANNELS written in decimal.
_CHANNEL_MAP_SCHEMA: dict[str, Any] = {
    "propertyNames": {
        "type": "string",
        "pattern": _channel_key_pattern(MAX_PLAN_CHANNELS),
        "description": f"A channel number, an integer 1..{MAX_PLAN_CHANNELS} (within the plan).",
    }
}


def _default(name: str) -> Any:
    """A threshold's built-in default, as ``AlarmConfig`` defines it (written once)."""
    return AlarmConfig.model_fields[name].default


# Request models are strict (:class:`StrictIn`), which refuses ``true``/``false`` for a
# float by itself; plain ``float`` keeps the bounds in the schema (``minimum``...), which
# ``odpm.config.Number``'s validator would turn into pydantic's own ``ge``/``le`` keys.


class ChannelThresholdsIn(StrictIn):
    """One channel's overrides: a field left out inherits the global threshold, ``null``
    switches that check off for the channel."""

    power_low_dbm: float | None = Field(None, ge=-100, le=40)
    power_high_dbm: float | None = Field(None, ge=-100, le=40)
    osnr_low_db: float | None = Field(None, ge=-10, le=80)
    offset_high_ghz: float | None = Field(None, ge=0, le=1000)


class ThresholdsIn(StrictIn):
    """The alarm thresholds: the keys of ``[alarms]`` in the config.

    PUT replaces the whole set: a field left out takes its built-in default (as in a
    config file's ``[alarms]``); ``null`` switches a threshold off.  PATCH merges the
    body into the current set (JSON Merge Patch, RFC 7396; see the route).
    ``overrides`` is accepted for ``channels``.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    hysteresis_db: float = Field(_default("hysteresis_db"), ge=0, le=10)
    offset_hysteresis_ghz: float = Field(_default("offset_hysteresis_ghz"), ge=0, le=50)
    power_low_dbm: float | None = Field(_default("power_low_dbm"), ge=-100, le=40)
    power_high_dbm: float | None = Field(_default("power_high_dbm"), ge=-100, le=40)
    osnr_low_db: float | None = Field(_default("osnr_low_db"), ge=-10, le=80)
    offset_high_ghz: float | None = Field(_default("offset_high_ghz"), ge=0, le=1000)
    total_power_low_dbm: float | None = Field(_default("total_power_low_dbm"), ge=-100, le=40)
    total_power_high_dbm: float | None = Field(_default("total_power_high_dbm"), ge=-100, le=40)
    device_lost_s: float | None = Field(
        _default("device_lost_s"),
        gt=0,
        le=86400,
        description="No scan for this long raises device_lost; null: off.",
    )
    expected_channels: list[ChannelNumber] = Field(default_factory=list)
    channels: dict[ChannelKey, ChannelThresholdsIn] = Field(
        default_factory=dict,
        validation_alias=AliasChoices("channels", "overrides"),
        json_schema_extra=_CHANNEL_MAP_SCHEMA,
        description="Per-channel overrides, keyed by channel number.",
    )
    deviation_db: float | None = Field(
        _default("deviation_db"),
        gt=0,
        le=60,
        description="deviation: a channel's power this far (dB) from the default reference "
        "trace; null: off.",
    )


class ChannelThresholdsOut(_Out):
    """The thresholds that apply to one channel (null: not checked)."""

    power_low_dbm: float | None
    power_high_dbm: float | None
    osnr_low_db: float | None
    offset_high_ghz: float | None


class ThresholdsOut(_Out):
    """The thresholds in force: global values, each channel's overrides as given, and what
    those overrides make effective for the channel."""

    hysteresis_db: float
    offset_hysteresis_ghz: float
    power_low_dbm: float | None
    power_high_dbm: float | None
    osnr_low_db: float | None
    offset_high_ghz: float | None
    total_power_low_dbm: float | None
    total_power_high_dbm: float | None
    device_lost_s: float | None
    deviation_db: float | None
    expected_channels: list[int]
    overrides: dict[int, dict[str, float | None]] = Field(
        json_schema_extra=_CHANNEL_MAP_SCHEMA,
        description="Per channel, only the fields set for it: a value, or null (switched "
        "off); a field absent here is inherited from the global one.",
    )
    effective: dict[int, ChannelThresholdsOut] = Field(
        json_schema_extra=_CHANNEL_MAP_SCHEMA,
        description="Per overridden channel, every threshold that applies to it (its "
        "overrides over the global values). Channels not listed use the global values.",
    )

    @classmethod
    def from_config(cls, alarms: AlarmConfig) -> ThresholdsOut:
        glob = alarms.model_dump(exclude={"channels"})
        return cls(
            **glob,
            overrides={
                ch: ov.model_dump(exclude_unset=True) for ch, ov in sorted(alarms.channels.items())
            },
            effective={
                ch: ChannelThresholdsOut(**alarms.effective(ch)) for ch in sorted(alarms.channels)
            },
        )


class SummaryOut(_Out):
    """One scan of one device, without its channels: the ``summary`` event of
    ``GET /api/v1/stream`` (see :func:`odpm.summary.reading_summary`)."""

    device: str
    time: datetime
    mode: ModeName
    temperature_c: float | None
    channels: int = Field(description="Channels in the reading.")
    total_power_dbm: float | None
    lit_channels: int
    tilt_db: float | None
    flatness_db: float | None
    min_osnr_db: float | None
    flagged_channels: int = Field(
        description="Present channels whose quality is not ok (OSNR not resolved, power only)."
    )
    alarms: list[AlarmEventOut] = Field(description="Raise/clear events of this scan.")
