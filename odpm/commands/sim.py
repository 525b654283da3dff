"""``odpm sim``: serve a simulated ODPM-96 over a pty or a TCP socket."""

from __future__ import annotations

import argparse

from odpm.commands import Subparsers
from odpm.errors import UserError


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "sim",
        help="run a simulated ODPM-96 on a pty or TCP port",
        description="Serve a simulated ODPM-96 that speaks the device wire protocol, and print "
        "the address to connect to.",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--tcp",
        metavar="HOST:PORT",
        default=None,
        help="listen on TCP (e.g. 127.0.0.1:5025; port 0 picks a free one)",
    )
    where.add_argument("--pty", action="store_true", help="serve on a new pseudo-terminal")
    p.add_argument(
        "--baud",
        type=int,
        default=None,
        help="pace output to this baud rate (10 bits per byte); default: unpaced",
    )
    p.add_argument("--seed", type=int, default=None, help="random seed for a repeatable run")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    raise UserError("`odpm sim` is not implemented yet (see the driver issue)")
