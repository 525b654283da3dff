"""One module per ``odpm`` subcommand: ``add_parser(subparsers)`` and ``run(args)``."""

import argparse
from typing import Any, TypeAlias

#: argparse's subparsers action has no public name; every command module takes one.
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def add_config_option(parser: argparse.ArgumentParser, **kwargs: Any) -> None:
    """The ``--config FILE`` option shared by commands that read the service config."""
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=None,
        help="TOML config file (default: $ODPM_CONFIG, else config/odpm.toml if present)",
        **kwargs,
    )
