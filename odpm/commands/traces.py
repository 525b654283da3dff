"""``odpm traces list|export``: the trace archive read straight from the journal file.

No running service is needed (SQLite in WAL mode lets this read while one writes).
``export`` writes one CSV per trace in the format ``odpm analyze`` reads; its
``#`` header lines give the ``--rbw-ghz`` to use.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from odpm.commands import Subparsers, add_config_option
from odpm.config import load_settings
from odpm.errors import UserError

if TYPE_CHECKING:
    from odpm.storage.traces import TraceArchive


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "traces",
        help="list or export stored traces (reads the journal; no service needed)",
        description="The trace archive of a device, read from the journal in storage.data_dir.",
    )
    tsub = p.add_subparsers(dest="traces_command", metavar="ACTION", required=True)
    for name, text in (
        ("list", "one line per stored trace: id, time, reason, points, RBW, scan id"),
        ("export", "write each stored trace as a CSV that odpm analyze reads"),
    ):
        a = tsub.add_parser(name, help=text, description=text)
        a.add_argument("device")
        a.add_argument("--start", type=_iso, help="ISO 8601 time (from)")
        a.add_argument("--end", type=_iso, help="ISO 8601 time (until, excluded)")
        a.add_argument("--reason", help="periodic, manual, alarm:los:7, or a prefix like alarm:*")
        a.add_argument(
            "--limit",
            type=int,
            default=100_000,
            help="at most this many traces (default: %(default)s)",
        )
        a.add_argument("--data-dir", help="journal directory (default: storage.data_dir)")
        add_config_option(a)
        if name == "export":
            a.add_argument("--out", default=".", metavar="DIR", help="output directory")
            a.add_argument("--id", type=int, action="append", help="only this trace id (repeat)")
        a.set_defaults(run=run_list if name == "list" else run_export)


def _iso(text: str) -> datetime:
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t


@contextlib.contextmanager
def open_archive(args: argparse.Namespace) -> Iterator[TraceArchive]:
    """The archive in the configured journal; a missing journal is a one-line error."""
    from odpm.storage.journal import JOURNAL_FILE, Journal
    from odpm.storage.traces import TraceArchive

    data_dir = Path(args.data_dir) if args.data_dir else load_settings(args.config).storage.data_dir
    path = data_dir / JOURNAL_FILE
    if not path.is_file():
        raise UserError(f"{path}: no journal there (--data-dir or storage.data_dir)")
    # Maintenance never runs from here: this process only reads (and adds the
    # archive's tables if the journal predates them).
    journal = Journal(path, maintenance_interval_s=10**9, forwarding=False)
    try:
        yield TraceArchive(journal)
    finally:
        journal.close()


def run_list(args: argparse.Namespace) -> int:
    with open_archive(args) as archive:
        infos = archive.list_traces(
            args.device, start=args.start, end=args.end, reason=args.reason, limit=args.limit
        )
    out = sys.stdout
    out.write(f"{'id':>8}  {'time (UTC)':32}  {'points':>6}  {'rbw GHz':>7}  {'scan':>8}  reason\n")
    for i in infos:
        out.write(
            f"{i.id:>8}  {i.time.isoformat():32}  {i.points:>6}  {i.rbw_ghz:>7.3f}  "
            f"{'' if i.scan_id is None else i.scan_id:>8}  {i.reason}\n"
        )
    out.write(f"{len(infos)} trace(s) of {args.device}\n")
    return 0


def run_export(args: argparse.Namespace) -> int:
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = 0
    with open_archive(args) as archive:
        ids = args.id or [
            i.id
            for i in archive.list_traces(
                args.device, start=args.start, end=args.end, reason=args.reason, limit=args.limit
            )
        ]
        for tid in ids:
            trace = archive.get(tid, device=args.device)
            if trace is None:
                raise UserError(f"no stored trace {tid} of device {args.device!r}")
            stamp = trace.info.time.strftime("%Y%m%dT%H%M%S.%fZ")
            path = out_dir / f"{args.device}-{stamp}-{tid}.csv"
            path.write_text(trace.to_csv())
            written += 1
            print(path)
    print(f"{written} trace(s) written to {out_dir}", file=sys.stderr)
    return 0
