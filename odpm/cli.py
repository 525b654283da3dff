"""The ``odpm`` command line.

Each subcommand lives in its own module under :mod:`odpm.commands` with two
functions, ``add_parser(subparsers)`` and ``run(args) -> int``; this module only
assembles them, so a subcommand's options and code sit side by side.

Errors a user can fix (a bad config, an unreachable device, a malformed file)
are raised as :class:`odpm.errors.UserError` and printed as one line on stderr
with exit code 2: a lab technician needs the reason, not a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from odpm import __version__
from odpm.commands import analyze, config_cmd, report, scan, serve, sim, storage_cmd, traces
from odpm.config import ConfigError
from odpm.errors import UserError

_COMMANDS = (serve, sim, scan, analyze, traces, report, config_cmd, storage_cmd)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="odpm",
        description="Acquisition service for ODPM-96 optical channel performance monitors.",
    )
    parser.add_argument("--version", action="version", version=f"odpm {__version__}")
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging verbosity on stderr (default: INFO)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in _COMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.log_level != "DEBUG":
        # httpx logs every request at INFO (the forwarder's 1-2 per second), URL
        # and all; only a debugging session wants that.
        for name in ("httpx", "httpcore"):
            logging.getLogger(name).setLevel(logging.WARNING)
    try:
        code: int = args.run(args)
    except (ConfigError, UserError) as exc:
        print(f"odpm {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    raise SystemExit(main())
