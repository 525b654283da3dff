"""``odpm scan``: connect to a monitor, take one scan, print it."""

from __future__ import annotations

import argparse

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
    p.add_argument("--mode", choices=["power", "trace"], default="power")
    p.add_argument("--format", choices=["json", "table"], default="table")
    p.add_argument("--timeout-s", type=float, default=5.0)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    raise UserError("`odpm scan` is not implemented yet (see the driver issue)")
