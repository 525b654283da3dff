"""``odpm serve``: acquisition workers, pipeline, storage and the HTTP API in one process."""

from __future__ import annotations

import argparse

from odpm.commands import Subparsers, add_config_option
from odpm.errors import UserError


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


def run(args: argparse.Namespace) -> int:
    raise UserError("`odpm serve` is not implemented yet (see the service issue)")
