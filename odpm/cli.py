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


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default (unless the text already names one),
    so ``odpm COMMAND --help`` answers "what happens if I leave this out"."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        shown = action.default not in (None, argparse.SUPPRESS) and action.nargs != 0
        if action.option_strings and shown and "default" not in text:
            text += " (default: %(default)s)"
        return text


def _all_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    out = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                out.extend(_all_parsers(sub))
    return out


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
    for p in _all_parsers(parser):
        p.formatter_class = DefaultsHelpFormatter
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
