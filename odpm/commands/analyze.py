"""``odpm analyze``: OSNR and channel analysis of an OSA-style trace file."""

from __future__ import annotations

import argparse

from odpm.commands import Subparsers
from odpm.errors import UserError


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "analyze",
        help="analyse a trace CSV (power, OSNR, offset per channel)",
        description="Reads a CSV whose header names the axis (wavelength_nm, frequency_thz or "
        "frequency_ghz) and power_dbm; lines starting with # are ignored.",
    )
    p.add_argument("trace", metavar="TRACE.csv")
    p.add_argument(
        "--rbw-ghz",
        type=float,
        required=True,
        help="noise-equivalent bandwidth of each trace point, GHz",
    )
    p.add_argument("--spacing-ghz", type=float, default=50.0)
    p.add_argument("--first-channel-thz", type=float, default=192.1)
    p.add_argument("--channels", type=int, default=80)
    p.add_argument("--noise", choices=["midpoint", "pit"], default="midpoint")
    p.add_argument("--format", choices=["json", "csv", "table"], default="table")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    raise UserError("`odpm analyze` is not implemented yet (see the pipeline issue)")
