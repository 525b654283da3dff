"""``odpm report DEVICE``: the commissioning report of a stored trace, from the journal file.

No running service is needed.  The thresholds and the device's channel plan come
from the config (``--config``); a device not in it gets the default plan.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from odpm.commands import Subparsers, add_config_option
from odpm.commands.traces import open_archive
from odpm.config import DeviceConfig, load_settings
from odpm.errors import UserError


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "report",
        help="commissioning report of a stored trace (HTML, JSON or CSV)",
        description="Per channel power, OSNR and offset with pass/fail against the thresholds "
        "in force (and a reference), per device totals and an overall PASS/FAIL.",
    )
    p.add_argument("device")
    p.add_argument("--reference", help="name of a reference trace to compare against")
    p.add_argument("--trace-id", type=int, help="stored trace id (default: the newest)")
    p.add_argument(
        "--format",
        choices=["html", "json", "csv"],
        default=None,
        help="default: from --out's extension, else html",
    )
    p.add_argument("--out", default=None, help="output file (default: stdout)")
    p.add_argument("--data-dir", help="journal directory (default: storage.data_dir)")
    add_config_option(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from odpm.report import ReportError, render_report

    settings = load_settings(args.config)
    try:
        device = settings.device(args.device)
    except KeyError:
        device = DeviceConfig(id=args.device, address="journal")
    fmt = args.format
    if fmt is None:
        suffix = Path(args.out).suffix.lower().lstrip(".") if args.out else ""
        fmt = suffix if suffix in ("html", "json", "csv") else "html"
    reference = args.reference or settings.archive.policy_for(device.archive).reference
    with open_archive(args) as archive:
        try:
            text = render_report(
                archive,
                device,
                pipeline=settings.pipeline,
                alarms=settings.alarms,
                trace_id=args.trace_id,
                reference=reference,
                fmt=fmt,
            )
        except ReportError as exc:
            raise UserError(str(exc)) from None
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"report written to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
