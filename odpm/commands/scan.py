"""``odpm scan``: connect to a monitor, take one scan, print it."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime

from odpm.commands import Subparsers
from odpm.errors import UserError


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "scan",
        help="take one scan from a device and print it",
        description="ADDRESS: a device path (/dev/ttyUSB0), a pyserial URL (socket://host:5025) "
        "or a VISA resource string (TCPIP::host::5025::SOCKET).",
    )
    p.add_argument("address")
    p.add_argument(
        "--mode",
        choices=["power", "trace"],
        default=None,
        help="power: port powers (MEAS:POW?); trace: a scanned spectrum with OSNR "
        "(MEAS:TRAC?) (default: power; OSAs: trace)",
    )
    p.add_argument("--format", choices=["json", "table"], default="table", help="output format")
    p.add_argument(
        "--timeout-s", type=float, default=5.0, help="how long to wait for each answer, seconds"
    )
    p.add_argument(
        "--transport",
        choices=["auto", "serial", "visa"],
        default="auto",
        help="auto: VISA for resource strings (containing ::), pyserial otherwise",
    )
    p.add_argument("--baud", type=int, default=115200, help="serial baud rate (default 115200)")
    p.add_argument("--device-id", default="scan", help="device name in the output")
    p.add_argument(
        "--driver",
        choices=["odpm96", "aq6370", "ms9740"],
        default="odpm96",
        help="instrument: ODPM-96 (default), Yokogawa AQ6370 or Anritsu MS9740 bench OSA "
        "(OSAs sweep traces: --mode trace is implied, power is refused)",
    )
    p.add_argument("--user", default="anonymous", help="AQ6370 Ethernet login user")
    p.add_argument(
        "--password-env",
        default="ODPM_OSA_PASSWORD",
        help="environment variable holding the AQ6370 login password (default "
        "ODPM_OSA_PASSWORD; empty when unset)",
    )
    p.add_argument(
        "--trace-format", choices=["binary", "ascii"], default="binary", help="OSA trace transfer"
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import os

    from drivers.errors import DriverError
    from drivers.registry import check_mode, open_driver
    from odpm.commands.analyze import _table
    from odpm.config import AlarmConfig, CalibrationConfig, PipelineConfig, PlanConfig
    from odpm.models import PortScan, RawScan, TraceScan
    from odpm.pipeline import Pipeline

    if not args.timeout_s > 0:
        raise UserError(f"--timeout-s must be positive, got {args.timeout_s}")
    mode = args.mode or ("power" if args.driver == "odpm96" else "trace")
    try:
        check_mode(args.driver, mode)
    except ValueError as exc:
        raise UserError(f"--mode {mode}: {exc}") from None
    scan: RawScan
    try:
        driver = open_driver(
            args.driver,
            args.address,
            kind=args.transport,
            baudrate=args.baud,
            timeout_s=args.timeout_s,
            username=args.user,
            password=os.environ.get(args.password_env, "") if args.password_env else "",
            trace_format=args.trace_format,
        )
        try:
            driver.identify()
            temperature_c = driver.read_temperature_c()
            time_utc = datetime.now(UTC)
            if mode == "trace":
                trace = driver.read_trace()
                scan = TraceScan(
                    args.device_id,
                    time_utc,
                    trace.frequency_thz,
                    trace.power_dbm,
                    trace.rbw_ghz,
                    temperature_c,
                )
            else:
                grid = driver.read_port_grid()
                power_dbm = driver.read_powers()
                scan = PortScan(
                    args.device_id, time_utc, power_dbm, grid.frequencies_thz, temperature_c
                )
        finally:
            driver.close()
    except (DriverError, ValueError) as exc:
        text = str(exc)
        raise UserError(text if args.address in text else f"{args.address}: {text}") from None
    pipeline = Pipeline(
        PlanConfig().to_plan(), PipelineConfig(), AlarmConfig(), CalibrationConfig()
    )
    reading = pipeline.process(scan)
    if args.format == "json":
        sys.stdout.write(json.dumps(reading.to_dict(), indent=2) + "\n")
    else:
        sys.stdout.write(_table(reading))
    return 0
