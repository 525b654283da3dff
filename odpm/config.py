"""Service configuration: a TOML file, overridden by ``ODPM_`` environment variables.

The file is the lab's record of what is connected where; the environment is for
deployments (containers, CI) that need to change one value without editing it.
Environment variables win: ``ODPM_STORAGE__INFLUX__URL=http://influx:8086``
overrides ``[storage.influx] url``.  Lists (``devices``) take JSON.

Unknown keys are errors, not silently ignored: a typo such as ``intervall_s``
must not leave a device polling at the default rate without anyone noticing.
Every problem is reported as one line naming the file, the key and the fault,
through :class:`ConfigError`, which the CLI prints without a traceback.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    SecretStr,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from odpm.grid import (
    DEFAULT_CHANNEL_COUNT,
    DEFAULT_FIRST_CHANNEL_THZ,
    DEFAULT_SPACING_GHZ,
    FLEX_CENTRE_STEP_GHZ,
    FLEX_WIDTH_STEP_GHZ,
    MAX_PLAN_CHANNELS,
    ODPM96_PORT_COUNT,
    ChannelPlan,
    grid_frequency_thz,
)

#: Where ``odpm`` looks when no ``--config`` is given (relative to the working directory).
DEFAULT_CONFIG_PATH = Path("config/odpm.toml")
#: Environment variable naming the config file (``--config`` wins over it).
CONFIG_PATH_ENV = "ODPM_CONFIG"

_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


class ConfigError(Exception):
    """A configuration problem, already phrased as one line for a person."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FlexChannelConfig(_Strict):
    """One channel of a flexible-grid plan (ITU-T G.694.1): either ``n`` and ``m``
    (centre 193.1 THz + n x 6.25 GHz, width m x 12.5 GHz) or ``centre_thz`` and
    ``width_ghz`` (which must lie on that grid)."""

    n: int | None = Field(None, ge=-10_000, le=10_000)
    m: int | None = Field(None, ge=1, le=1_000)
    centre_thz: float | None = Field(None, gt=180, lt=200)
    width_ghz: float | None = Field(None, gt=0, le=5_000)

    @model_validator(mode="after")
    def _one_form(self) -> FlexChannelConfig:
        grid = self.n is not None or self.m is not None
        given = self.centre_thz is not None or self.width_ghz is not None
        if grid and given:
            raise ValueError("give either n and m or centre_thz and width_ghz, not both")
        if grid and (self.n is None or self.m is None):
            raise ValueError("needs both n and m")
        if not grid and (self.centre_thz is None or self.width_ghz is None):
            raise ValueError("needs n and m, or centre_thz and width_ghz")
        return self

    def slot(self) -> tuple[float, float]:
        """(centre THz, width GHz) as given or from (n, m)."""
        if self.n is not None and self.m is not None:
            return (
                float(grid_frequency_thz(self.n, FLEX_CENTRE_STEP_GHZ)),
                self.m * FLEX_WIDTH_STEP_GHZ,
            )
        assert self.centre_thz is not None and self.width_ghz is not None
        return (self.centre_thz, self.width_ghz)


class PlanConfig(_Strict):
    """The line system's channel plan: a regular ITU-T G.694.1 grid (``channels`` a
    count), explicit centres, or a flexible grid (``[[devices.plan.channels]]``
    entries, numbered 1..N in ascending frequency)."""

    first_channel_thz: float = Field(DEFAULT_FIRST_CHANNEL_THZ, gt=180, lt=200)
    #: ITU-T G.694.1: no grid is finer than 6.25 GHz (a finer value is a typo, and
    #: overflows the grid index).
    spacing_ghz: float = Field(DEFAULT_SPACING_GHZ, ge=6.25, le=1000)
    #: A count (regular grid) or the flex channels; the discriminator keeps a bad
    #: entry's error about that entry (not also "should be a valid integer").
    channels: Annotated[
        Annotated[Annotated[int, Field(ge=1, le=MAX_PLAN_CHANNELS)], Tag("count")]
        | Annotated[
            Annotated[list[FlexChannelConfig], Field(min_length=1, max_length=MAX_PLAN_CHANNELS)],
            Tag("flex"),
        ],
        Discriminator(lambda v: "flex" if isinstance(v, list) else "count"),
    ] = DEFAULT_CHANNEL_COUNT
    custom_frequencies_thz: list[float] | None = None

    def to_plan(self) -> ChannelPlan:
        if isinstance(self.channels, list):
            if self.custom_frequencies_thz:
                raise ValueError("give either custom_frequencies_thz or flex channels, not both")
            centres, widths = zip(*(ch.slot() for ch in self.channels), strict=True)
            return ChannelPlan.from_slots(centres, widths)
        if self.custom_frequencies_thz:
            return ChannelPlan.custom(self.custom_frequencies_thz, self.spacing_ghz)
        return ChannelPlan(self.first_channel_thz, self.spacing_ghz, self.channels)

    @model_validator(mode="after")
    def _plan_is_valid(self) -> PlanConfig:
        try:
            self.to_plan()
        except ValueError as exc:
            raise ValueError(str(exc)) from None
        return self


class CalibrationConfig(_Strict):
    """Corrections applied to raw powers before any analysis.

    ``port_offsets_db``: added to each port's reading (empty = none; else one per
    port).  ``wavelength_correction``: ``[[frequency_thz, offset_db], ...]``
    points, linearly interpolated and added to every trace point and port.
    """

    port_offsets_db: list[float] = Field(default_factory=list)
    wavelength_correction: list[tuple[float, float]] = Field(default_factory=list)

    @field_validator("port_offsets_db")
    @classmethod
    def _one_per_port(cls, v: list[float]) -> list[float]:
        if v and len(v) != ODPM96_PORT_COUNT:
            raise ValueError(f"needs {ODPM96_PORT_COUNT} values (one per port), got {len(v)}")
        return v

    @field_validator("wavelength_correction")
    @classmethod
    def _ascending(cls, v: list[tuple[float, float]]) -> list[tuple[float, float]]:
        freqs = [f for f, _ in v]
        if any(b <= a for a, b in itertools.pairwise(freqs)):
            raise ValueError("frequencies must be strictly ascending")
        return v


class ArchivePolicy(_Strict):
    """Which spectra a device keeps (``odpm.archive``); every field may be overridden
    per device (``[devices.archive]``) and through the API."""

    #: One trace every this many seconds (wall-clock buckets); 0 = none periodically.
    every_s: float = Field(60.0, ge=0, le=86400)
    #: When an alarm is raised, keep the traces of the last ``pre_s`` and next ``post_s``.
    on_alarm: bool = True
    pre_s: float = Field(10.0, ge=0, le=600)
    post_s: float = Field(10.0, ge=0, le=3600)
    #: Keep the trace of every ``POST .../scan``.
    on_demand: bool = True
    #: The reference trace compared against by default (``deviation`` alarm, compare, report).
    reference: str | None = None


class ArchivePolicyOverride(_Strict):
    """Per-device changes to :class:`ArchivePolicy`; a field left out inherits."""

    every_s: float | None = Field(None, ge=0, le=86400)
    on_alarm: bool | None = None
    pre_s: float | None = Field(None, ge=0, le=600)
    post_s: float | None = Field(None, ge=0, le=3600)
    on_demand: bool | None = None
    reference: str | None = None


class ArchiveConfig(ArchivePolicy):
    """The trace archive: the global policy plus retention (``[archive]``)."""

    #: Cap of the stored traces (they also count against ``storage.max_bytes``).
    max_bytes: int = Field(1 << 30, ge=1_000_000)
    #: Traces older than this are pruned (oldest first; never those of an active alarm).
    retention_days: float = Field(30.0, gt=0)

    def policy_for(self, override: ArchivePolicyOverride | None) -> ArchivePolicy:
        """The policy in force for a device: these defaults with its override's fields."""
        base = ArchivePolicy(**{k: getattr(self, k) for k in ArchivePolicy.model_fields})
        if override is None:
            return base
        changes = {k: getattr(override, k) for k in override.model_fields_set}
        return base.model_copy(update=changes)


class OsnrTracesConfig(_Strict):
    """A device's second traces for OSNR (``[devices.osnr]``, :mod:`odpm.osnr_traces`).

    Each is the name of an archived reference trace of the device, or a path ending in
    ``.csv`` (a trace file as ``odpm analyze`` reads it).  ``reference``: the same
    channels at high OSNR (the ``reference`` method); ``noise_trace``: the channels'
    transmitters switched off, ROADM passbands kept (the ``signal_off`` method, used
    in preference when both are set)."""

    reference: str | None = Field(None, min_length=1, max_length=4096, pattern=r"^[^\r\n]+$")
    noise_trace: str | None = Field(None, min_length=1, max_length=4096, pattern=r"^[^\r\n]+$")


class DeviceConfig(_Strict):
    """One monitor: how to reach it and how to acquire from it."""

    id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    #: ``odpm96``, or a bench OSA: ``aq6370`` (Yokogawa AQ6370 series), ``ms9740`` (Anritsu).
    driver: Literal["odpm96", "aq6370", "ms9740"] = "odpm96"
    #: A device path (``/dev/ttyUSB0``), a pyserial URL (``socket://host:5025``,
    #: ``rfc2217://``, ``loop://``) or a VISA resource (``TCPIP::host::5025::SOCKET``).
    address: str = Field(min_length=1)
    #: ``auto`` picks VISA for resource strings containing ``::``, pyserial otherwise.
    transport: Literal["auto", "serial", "visa"] = "auto"
    baudrate: int = Field(115200, ge=9600, le=921600)
    timeout_s: float = Field(2.0, gt=0, le=60)
    mode: Literal["power", "trace", "stream"] = "power"
    interval_s: float = Field(1.0, ge=0.0, le=86400)
    averaging: int = Field(1, ge=1, le=64)
    stream_rate_hz: float = Field(10.0, ge=0.1, le=1000)
    enabled: bool = True
    plan: PlanConfig = Field(default_factory=PlanConfig)
    calibration: CalibrationConfig = Field(default_factory=CalibrationConfig)
    #: Changes to the global ``[archive]`` policy for this device.
    archive: ArchivePolicyOverride = Field(default_factory=ArchivePolicyOverride)
    #: Reference / signal-off traces for the OSNR methods that need a second trace.
    osnr: OsnrTracesConfig = Field(default_factory=OsnrTracesConfig)
    #: The API of the agent that acquires this device (replicas name it when asked for
    #: a stored trace, which stays on that agent).
    agent_url: str = ""
    #: Bench OSAs (README "Bench OSAs"): AQ6370 Ethernet login user and password.  The
    #: password may instead come from the environment variable named by ``password_env``.
    username: str = Field("anonymous", pattern=r'^[^"\r\n]{1,64}$')
    password: SecretStr = SecretStr("")
    password_env: str = Field("", pattern=r"^([A-Za-z_][A-Za-z0-9_]*)?$")
    #: OSA trace transfer: ``binary`` (IEEE 488.2 REAL blocks) or ``ascii``.
    trace_format: Literal["binary", "ascii"] = "binary"
    #: OSA wavelengths: ``auto`` asks the instrument (AQ6370) or assumes vacuum (MS9740).
    wavelength_medium: Literal["auto", "vacuum", "air"] = "auto"
    #: AQ6370: also read the instrument's own WDM analysis of each sweep and keep the
    #: latest beside odpm's (``GET /api/v1/devices/{id}/instrument-analysis``).
    instrument_analysis: bool = False

    @model_validator(mode="before")
    @classmethod
    def _osa_defaults_to_trace(cls, data: Any) -> Any:
        """A bench OSA only sweeps traces: that is its default mode."""
        if isinstance(data, dict) and data.get("driver") in _OSA_DRIVERS and "mode" not in data:
            return {**data, "mode": "trace"}
        return data

    @model_validator(mode="after")
    def _mode_supported(self) -> DeviceConfig:
        if self.driver in _OSA_DRIVERS and self.mode != "trace":
            raise ValueError(
                f"the {self.driver} driver is a bench OSA: it has no {self.mode} mode "
                '(no photodiode ports, no stream); use mode = "trace"'
            )
        if self.instrument_analysis and self.driver != "aq6370":
            raise ValueError(
                f"instrument_analysis reads the AQ6370's WDM analysis; the {self.driver} "
                "driver has none"
            )
        return self

    def resolved_password(self) -> str:
        """``password_env``'s value when set, else ``password`` (never logged)."""
        if self.password_env:
            return os.environ.get(self.password_env, "")
        return self.password.get_secret_value()


#: Drivers of bench OSAs (trace mode only).
_OSA_DRIVERS = ("aq6370", "ms9740")


class InfluxConfig(_Strict):
    """Where readings are forwarded.  An empty ``url`` means: journal only."""

    url: str = ""
    #: ``v1``: /write + /query (InfluxDB 1.x, 2.x v1-compat, 3.x); ``v2``: influxdb-client.
    dialect: Literal["v1", "v2"] = "v1"
    database: str = "odpm"
    retention_policy: str = ""
    org: str = ""
    bucket: str = "odpm"
    token: str = ""
    username: str = ""
    password: str = ""
    batch_lines: int = Field(5000, ge=1, le=100_000)
    timeout_s: float = Field(10.0, gt=0, le=300)
    #: v1: ``CREATE DATABASE`` at start and when a write answers "database not
    #: found" (as Telegraf does); false for users without the admin privilege.
    create_database: bool = True
    #: Health turns ``degraded`` when the oldest unforwarded reading is older than this.
    max_lag_s: float = Field(60.0, gt=0, le=86400 * 365)

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if v and not re.match(r"^https?://[^/\s]+", v):
            raise ValueError(f"must be an http:// or https:// URL, got {redact_url(v)!r}")
        return v.rstrip("/")

    @property
    def enabled(self) -> bool:
        return bool(self.url)


class StorageConfig(_Strict):
    data_dir: Path = Path("data")
    retention_days: float = Field(7.0, gt=0)
    max_bytes: int = Field(2_000_000_000, ge=1_000_000)
    influx: InfluxConfig = Field(default_factory=InfluxConfig)


class ApiConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    #: SHA-256 hex digests of accepted API keys (``odpm config hash-key`` makes one).
    api_key_sha256: list[str] = Field(default_factory=list)
    read_requires_key: bool = False
    #: Keys for ``/metrics`` only (a Prometheus scraper's), as SHA-256 digests.  When
    #: any is set, or reads require a key, ``/metrics`` needs one of these or an API key.
    metrics_key_sha256: list[str] = Field(default_factory=list)
    #: Largest request body accepted (413 beyond); the API's bodies are a few hundred bytes.
    max_body_bytes: int = Field(1_048_576, ge=1024, le=1_073_741_824)
    #: Seconds a client has to send a whole request (headers and body) once it connected
    #: or started one; a half-sent request is dropped after that (slowloris).
    read_timeout_s: float = Field(10.0, gt=0, le=3600)
    #: Seconds an idle keep-alive connection is kept between requests.
    keep_alive_s: float = Field(5.0, gt=0, le=3600)
    #: Connections (and requests in progress) served at once; beyond, new requests get 503.
    max_connections: int = Field(512, ge=1, le=100_000)

    @field_validator("api_key_sha256", "metrics_key_sha256")
    @classmethod
    def _hex_digests(cls, v: list[str]) -> list[str]:
        out = [h.strip().lower() for h in v]
        for h in out:
            if not _SHA256_HEX.match(h):
                raise ValueError(
                    "each entry must be a 64-character SHA-256 hex digest "
                    "(make one with `odpm config hash-key`), not the key itself"
                )
        return out


def _not_a_boolean(value: Any) -> Any:
    """Refuse ``true``/``false`` where a number belongs: pydantic's lax mode would take
    ``"total_power_high_dbm": false`` as 0.0 dBm, a threshold nobody meant."""
    if isinstance(value, bool):
        raise ValueError(f"must be a number, not a boolean ({str(value).lower()})")
    return value


#: A number that may not be given as a boolean (strings from the environment still parse).
Number = Annotated[float, BeforeValidator(_not_a_boolean)]

#: (low, high) threshold pairs: a low threshold above its high one is refused.
_LOW_HIGH_PAIRS = (
    ("power_low_dbm", "power_high_dbm"),
    ("total_power_low_dbm", "total_power_high_dbm"),
)


def _check_low_high(values: Mapping[str, float | None], where: str) -> None:
    for low, high in _LOW_HIGH_PAIRS:
        lo, hi = values.get(low), values.get(high)
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"{where}{low} ({lo:g}) is above {where}{high} ({hi:g})")


class ThresholdValues(_Strict):
    """A channel's threshold overrides: a field left unset inherits the global one,
    one set to null switches that check off for the channel."""

    power_low_dbm: Number | None = None
    power_high_dbm: Number | None = None
    osnr_low_db: Number | None = None
    offset_high_ghz: Number | None = None


class AlarmConfig(_Strict):
    """Global thresholds with per-channel overrides (``[alarms.channels.12]``)."""

    hysteresis_db: Number = Field(0.5, ge=0, le=10)
    #: Hysteresis of the offset alarm (GHz; the dB one does not apply to frequency).
    offset_hysteresis_ghz: Number = Field(0.5, ge=0, le=50)
    power_low_dbm: Number | None = -30.0
    power_high_dbm: Number | None = 5.0
    osnr_low_db: Number | None = 15.0
    offset_high_ghz: Number | None = 5.0
    total_power_low_dbm: Number | None = -25.0
    total_power_high_dbm: Number | None = 20.0
    #: A device that delivers no scan for this long (unreachable, or connected and
    #: silent) raises the device-wide ``device_lost`` alarm; null switches it off.
    device_lost_s: Number | None = Field(30.0, gt=0, le=86400)
    #: Expected-lit channels: a channel listed here that goes dark raises loss of
    #: signal.  Empty means "every channel seen lit since start".
    expected_channels: list[int] = Field(default_factory=list)
    channels: dict[int, ThresholdValues] = Field(default_factory=dict)
    #: ``deviation``: a channel's power this far from the device's default reference
    #: trace (``archive.reference``); None = off.
    deviation_db: Number | None = Field(None, gt=0, le=60)

    def effective(self, channel: int) -> dict[str, float | None]:
        """The thresholds that apply to ``channel``: its overrides over the global ones."""
        override = self.channels.get(channel)
        out: dict[str, float | None] = {}
        for name in ThresholdValues.model_fields:
            if override is not None and name in override.model_fields_set:
                out[name] = getattr(override, name)
            else:
                out[name] = getattr(self, name)
        return out

    @model_validator(mode="after")
    def _low_not_above_high(self) -> AlarmConfig:
        _check_low_high(self.model_dump(include={n for p in _LOW_HIGH_PAIRS for n in p}), "")
        for ch in sorted(self.channels):
            _check_low_high(self.effective(ch), f"channels.{ch}.")
        return self

    def check_channels(self, count: int, owner: str) -> None:
        """ValueError naming the first channel outside a plan of ``count`` channels."""
        for name, chans in (
            ("expected_channels", self.expected_channels),
            ("channels", self.channels),
        ):
            for ch in chans:
                if not 1 <= ch <= count:
                    raise ValueError(f"{name}.{ch}: channel {ch} is not in {owner} (1..{count})")


class PipelineConfig(_Strict):
    """How traces are analysed (IEC 61280-2-9 interpolation settings)."""

    noise_method: Literal["midpoint", "pit"] = "midpoint"
    #: Width of the window averaged around each inter-channel midpoint.
    noise_window_ghz: float = Field(6.25, gt=0, le=50)
    #: A channel is present when its slot power exceeds this...
    detection_threshold_dbm: float = -45.0
    #: ...and its peak stands this far above the interpolated noise (or, for a
    #: spectrum wider than its slot, whose neighbours fill the midpoints, its slot's
    #: central half stands 1 dB above them: present, but without an interpolated OSNR;
    #: see odpm.pipeline.formulas.CENTRE_RISE_DB).
    detection_relative_db: float = Field(6.0, ge=0)
    #: Give channels whose noise interpolation cannot resolve an OSNR from the in-band
    #: methods (raised-cosine model fit), and judge presence by them too.
    inband_methods: bool = True
    #: A fitted OSNR is reported only when its one-sigma uncertainty is at most this.
    fit_max_uncertainty_db: float = Field(0.4, gt=0, le=3)
    #: Whether ROADM (WSS) filters between the last amplifier and the monitor may carve
    #: the noise between channels.  One trace cannot always tell (a channel that fills its
    #: slot hides the floor that would show the notch), so a technician who knows says so:
    #: ``roadm``: yes - no model-fit OSNR, and an interpolated one only where the noise
    #: beside the channel (the shoulders) confirms it; ``none``: no - the single-trace
    #: carving heuristics are off and the fit is trusted without further evidence;
    #: ``auto``: the trace decides (dark slots, the gaps between channels, shoulders): it
    #: drops the numbers where it sees carving, and gives a fitted OSNR (and, through an
    #: RBW wider than ``noise_window_ghz``, an interpolated one) only where it sees the
    #: noise uncarved somewhere, so a line with every slot lit by wide channels gets
    #: flags rather than numbers (see docs/osnr_methods.md).
    line_filtering: Literal["auto", "roadm", "none"] = "auto"


class Settings(BaseSettings):
    """Everything ``odpm serve`` needs.  Build it with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix="ODPM_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    devices: list[DeviceConfig] = Field(default_factory=list)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    api: ApiConfig = Field(default_factory=ApiConfig)
    alarms: AlarmConfig = Field(default_factory=AlarmConfig)
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)
    archive: ArchiveConfig = Field(default_factory=ArchiveConfig)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML file arrives as init kwargs; the environment overrides it.
        return (env_settings, init_settings)

    @model_validator(mode="after")
    def _alarm_channels_in_plans(self) -> Settings:
        """Threshold overrides and expected channels must exist in every device's plan
        (the default plan when no device is configured: ``--simulate`` uses it)."""
        plans = [(f"device {d.id!r}'s channel plan", d.plan.to_plan().count) for d in self.devices]
        for owner, count in plans or [("the default channel plan", DEFAULT_CHANNEL_COUNT)]:
            try:
                self.alarms.check_channels(count, owner)
            except ValueError as exc:
                raise ValueError(f"alarms.{exc}") from None
        return self

    @field_validator("devices")
    @classmethod
    def _unique_ids(cls, v: list[DeviceConfig]) -> list[DeviceConfig]:
        seen: set[str] = set()
        for d in v:
            if d.id in seen:
                raise ValueError(f"device id {d.id!r} is used twice")
            seen.add(d.id)
        return v

    def device(self, device_id: str) -> DeviceConfig:
        for d in self.devices:
            if d.id == device_id:
                return d
        raise KeyError(device_id)


def redact_url(url: str) -> str:
    """``url`` without its userinfo (``http://user:pass@host`` -> ``http://***@host``).

    Every place that prints or logs a URL from the config goes through this: a
    password inside the InfluxDB URL must not reach a log line or a terminal.
    """
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"***@{host}"))


def hash_api_key(key: str) -> str:
    """The SHA-256 hex digest stored in ``api.api_key_sha256`` for ``key``."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _error_location(loc: tuple[int | str, ...]) -> str:
    out = ""
    previous: int | str | None = None
    for part in loc:
        if previous == "channels" and part in ("count", "flex"):
            continue  # PlanConfig.channels' union tag, not a key of the file
        previous = part
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def describe_validation_error(source: str, exc: ValidationError) -> str:
    """One line naming the source, each bad key, what was wrong and what was given."""
    parts = []
    for err in exc.errors():
        loc = _error_location(tuple(err["loc"]))
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "value_error":
            msg = str(err.get("ctx", {}).get("error", msg))  # without "Value error, "
        given = err.get("input")
        if isinstance(given, str) and "://" in given:
            given = redact_url(given)  # a URL may carry a password
        shown = (
            ""
            if err["type"] in ("missing", "extra_forbidden") or isinstance(given, dict | list)
            else f" (got {given!r})"
        )
        parts.append(msg if loc == "(top level)" else f"{loc}: {msg}{shown}")
    return f"{source}: " + "; ".join(parts)


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file, turning every failure into a one-line ConfigError."""
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a config file") from None
    except PermissionError:
        raise ConfigError(f"{path}: permission denied") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text: {exc}") from None


def resolve_config_path(path: Path | str | None) -> Path | None:
    """``--config`` if given, else ``$ODPM_CONFIG``, else the default file if it exists."""
    if path is not None:
        return Path(path)
    env = os.environ.get(CONFIG_PATH_ENV)
    if env:
        return Path(env)
    return DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.is_file() else None


def load_settings(path: Path | str | None = None) -> Settings:
    """Load and validate the configuration.

    ``path=None`` resolves the default (see :func:`resolve_config_path`); with
    no file at all the built-in defaults apply (no devices, journal only).
    """
    resolved = resolve_config_path(path)
    data: dict[str, Any] = {}
    source = "environment"
    if resolved is not None:
        data = read_toml(resolved)
        source = str(resolved)
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(source, exc)) from None
