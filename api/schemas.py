"""Response and request bodies of the HTTP API (pydantic), with units in field names.

The reading and trace shapes are the ones :meth:`odpm.models.Reading.to_dict`
and :func:`odpm.service.trace_dict` produce; the routes send those pre-encoded
bytes (encoded once per reading, not once per request) and these models
document them in OpenAPI, where a schemathesis run checks they agree.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from odpm.config import AlarmConfig
from odpm.grid import ODPM96_PORT_COUNT
from odpm.models import AlarmKind, Quality

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
]
assert set(get_args(QualityLabel)) == {q.label for q in Quality}
assert set(get_args(AlarmKindValue)) == {k.value for k in AlarmKind}
ModeName = Literal["power", "trace", "stream"]


def _whole_number(value: object) -> object:
    """A float without a fraction as the int it is: JSON Schema counts ``80.0`` as an
    integer, so a strict model must too; ``80.5``, ``true`` and ``"80"`` stay errors."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _channel_key(value: object) -> object:
    """A JSON object key is a string: ``"12"`` names channel 12 (plain digits, no sign,
    no leading zero, as :data:`CHANNEL_KEY_PATTERN` says)."""
    if isinstance(value, str) and _CANONICAL_INT.fullmatch(value):
        return int(value)
    return value


_CANONICAL_INT = re.compile(r"[1-9][0-9]{0,3}")


# The bounds come before the validator so that the JSON schema states them
# (``minimum``/``maximum``); after it pydantic cannot, and writes ``ge``/``le``.
#: A channel number in a request body (strict, but ``80.0`` is 80).
ChannelNumber = Annotated[int, Field(ge=1, le=ODPM96_PORT_COUNT), BeforeValidator(_whole_number)]
#: A channel number as the key of a JSON object.
ChannelKey = Annotated[int, Field(ge=1, le=ODPM96_PORT_COUNT), BeforeValidator(_channel_key)]
#: What :data:`ChannelKey` accepts, for the schema (``propertyNames``): 1..96 in digits.
CHANNEL_KEY_PATTERN = "^(?:[1-9]|[1-8][0-9]|9[0-6])$"


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
    last_error: str | None
    counters: CountersOut
    readings_stored: int
    processing_errors: int


class ChannelOut(_Out):
    channel: int
    frequency_thz: float
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
    channel: int | None = Field(description="null for device-wide alarms (total power).")
    active: bool = Field(description="true when raised, false when cleared.")
    value: float | None
    threshold: float | None


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
    time: datetime
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


class ChannelThresholdsIO(StrictIn):
    power_low_dbm: float | None = None
    power_high_dbm: float | None = None
    osnr_low_db: float | None = None
    offset_high_ghz: float | None = None


class ThresholdsIO(StrictIn):
    """Alarm thresholds (null: not checked); the same keys as ``[alarms]`` in the config.

    A PUT replaces the fields it names and keeps the others.
    """

    hysteresis_db: float = Field(0.5, ge=0, le=10)
    offset_hysteresis_ghz: float = Field(0.5, ge=0, le=50)
    power_low_dbm: float | None = Field(None, ge=-100, le=40)
    power_high_dbm: float | None = Field(None, ge=-100, le=40)
    osnr_low_db: float | None = Field(None, ge=-10, le=80)
    offset_high_ghz: float | None = Field(None, ge=0, le=1000)
    total_power_low_dbm: float | None = Field(None, ge=-100, le=40)
    total_power_high_dbm: float | None = Field(None, ge=-100, le=40)
    expected_channels: list[ChannelNumber] | None = None
    channels: dict[ChannelKey, ChannelThresholdsIO] | None = Field(
        None,
        description="Per-channel overrides, keyed by channel number.",
        json_schema_extra={"propertyNames": {"pattern": CHANNEL_KEY_PATTERN}},
    )
    deviation_db: float | None = Field(
        None, gt=0, le=60, description="power change from the default reference trace (dB)"
    )

    @classmethod
    def from_config(cls, alarms: AlarmConfig) -> ThresholdsIO:
        fields = cls.model_fields
        return cls.model_validate({k: v for k, v in alarms.model_dump().items() if k in fields})


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
