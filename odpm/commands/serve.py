"""``odpm serve``: acquisition workers, pipeline, storage and the HTTP API in one process."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path
from types import FrameType

import uvicorn
from pydantic import ValidationError

from odpm.commands import Subparsers, add_config_option
from odpm.config import (
    ApiConfig,
    ConfigError,
    Settings,
    StorageConfig,
    describe_validation_error,
    load_settings,
)
from odpm.errors import UserError
from odpm.service import Service

log = logging.getLogger(__name__)


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "serve",
        help="run the acquisition service and HTTP API",
        description="Start an acquisition worker per configured device, the analysis pipeline, "
        "the journal (and InfluxDB forwarder when configured) and the HTTP API.",
    )
    add_config_option(p)
    p.add_argument(
        "--simulate",
        type=int,
        default=0,
        metavar="N",
        help="add N simulated ODPM-96 devices, each on its own loopback TCP port",
    )
    p.add_argument(
        "--simulate-mode",
        choices=("power", "trace", "stream"),
        default="trace",
        help="how the simulated devices are read: trace (MEAS:TRAC?, the only mode that "
        "measures OSNR), power (MEAS:POW?, port powers only) or stream (binary frames, "
        "port powers only) (default: trace)",
    )
    p.add_argument(
        "--simulate-interval-s",
        type=_interval_s,
        default=1.0,
        metavar="SECONDS",
        help="seconds between scans of each simulated device, 0 for back to back; in "
        "stream mode the frame rate is 1/SECONDS (default: 1.0)",
    )
    p.add_argument("--host", default=None, help="API listen address (default: api.host)")
    p.add_argument("--port", type=int, default=None, help="API port (default: api.port)")
    p.add_argument(
        "--influx-url",
        default=None,
        metavar="URL",
        help="forward to this InfluxDB (default: storage.influx.url)",
    )
    p.add_argument(
        "--data-dir",
        default=None,
        metavar="DIR",
        help="journal directory (default: storage.data_dir)",
    )
    p.add_argument("--no-api", action="store_true", help="acquire and store only (agent)")
    p.add_argument(
        "--no-acquisition", action="store_true", help="serve the API from storage only (replica)"
    )
    p.set_defaults(run=run)


#: Seconds uvicorn waits for open connections before cancelling them at shutdown.
GRACEFUL_SHUTDOWN_S = 3
#: The range ``DeviceConfig.interval_s`` accepts.
MAX_INTERVAL_S = 86400.0
#: Frame periods ``DeviceConfig.stream_rate_hz`` accepts (1000 Hz .. 0.1 Hz).
MIN_STREAM_INTERVAL_S = 0.001
MAX_STREAM_INTERVAL_S = 10.0


def _interval_s(text: str) -> float:
    """``--simulate-interval-s``: a number of seconds in 0..MAX_INTERVAL_S."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0.0 <= value <= MAX_INTERVAL_S:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be in 0..{MAX_INTERVAL_S:g} s, got {text}")
    return value


def apply_overrides(settings: Settings, args: argparse.Namespace) -> Settings:
    """Command-line options win over the file and the environment.

    Each changed section is validated again, so ``--influx-url ftp://x`` gets
    the same one-line error as a bad value in the file.
    """
    api = settings.api.model_dump()
    storage = settings.storage.model_dump()
    if args.host is not None:
        api["host"] = args.host
    if args.port is not None:
        api["port"] = args.port
    if args.data_dir is not None:
        storage["data_dir"] = Path(args.data_dir)
    if args.influx_url is not None:
        storage["influx"]["url"] = args.influx_url
    try:
        return settings.model_copy(
            update={
                "api": ApiConfig.model_validate(api),
                "storage": StorageConfig.model_validate(storage),
            }
        )
    except ValidationError as exc:
        raise ConfigError(describe_validation_error("command line", exc)) from None


def simulate_options(mode: str, interval_s: float) -> dict[str, object]:
    """DeviceConfig fields of the ``--simulate`` devices.

    A stream has no interval between scans but a frame rate, so there the
    interval sets ``stream_rate_hz`` (within the range the device config allows).
    """
    options: dict[str, object] = {"mode": mode, "interval_s": interval_s}
    if mode == "stream":
        if not MIN_STREAM_INTERVAL_S <= interval_s <= MAX_STREAM_INTERVAL_S:
            raise UserError(
                f"--simulate-interval-s with --simulate-mode stream sets the frame rate: it must "
                f"be in {MIN_STREAM_INTERVAL_S:g}..{MAX_STREAM_INTERVAL_S:g} s, got {interval_s:g}"
            )
        options["stream_rate_hz"] = 1.0 / interval_s
    return options


def run(args: argparse.Namespace) -> int:
    if args.no_api and args.no_acquisition:
        raise UserError("--no-api and --no-acquisition together leave nothing to run")
    if args.simulate < 0:
        raise UserError(f"--simulate must be 0 or more, got {args.simulate}")
    if args.simulate and args.no_acquisition:
        raise UserError("--simulate needs acquisition; a --no-acquisition replica only reads")
    settings = apply_overrides(load_settings(args.config), args)
    if not settings.devices and not args.simulate and not args.no_acquisition:
        log.warning("no devices configured: add [[devices]] to the config or use --simulate N")
    try:
        service = Service.from_settings(
            settings,
            simulate=args.simulate,
            simulate_options=simulate_options(args.simulate_mode, args.simulate_interval_s),
            acquisition=not args.no_acquisition,
        )
    except (OSError, ValueError) as exc:
        raise UserError(str(exc)) from None
    # uvicorn re-raises the signal it caught once it has shut down; with the
    # default SIGTERM disposition that would kill us after a clean shutdown and
    # report failure.  A handler of our own turns it into a normal exit.
    stop = threading.Event()

    def note_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, note_signal)
    signal.signal(signal.SIGINT, note_signal)
    if args.no_api:
        return _run_agent(service, stop)
    return _run_api(service, settings.api)


def _run_agent(service: Service, stop: threading.Event) -> int:
    """Acquire and store until SIGINT/SIGTERM (``--no-api``)."""
    service.start()
    try:
        while not stop.wait(1.0):
            pass
    finally:
        service.stop()
    return 0


class _Server(uvicorn.Server):
    """uvicorn, ending live streams as soon as a shutdown signal arrives.

    Otherwise an open SSE connection would hold uvicorn's graceful shutdown
    until its timeout.
    """

    def __init__(self, config: uvicorn.Config, service: Service) -> None:
        super().__init__(config)
        self._service = service

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        self._service.broadcaster.close_threadsafe()


def _run_api(service: Service, api: ApiConfig) -> int:
    from api.app import create_app
    from api.server import uvicorn_config

    # Timeouts, connection cap and header limit from api.* (see api/server.py).
    config = uvicorn_config(
        create_app(service),
        api,
        lifespan="on",
        log_config=None,  # keep the CLI's logging setup
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        access_log=False,
    )
    server = _Server(config, service)
    try:
        server.run()
    finally:
        if service.started:  # startup failed half-way, or the loop died
            service.stop()
    return 0 if server.started else 1
