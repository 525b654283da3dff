"""``odpm storage status`` and ``odpm storage requeue``: the journal's backlog and quarantine.

Both read the journal file directly (``storage.data_dir``, or ``--data-dir``),
so they work whether ``odpm serve`` runs or not; a running service picks up a
requeue within a second, a stopped one at its next start.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from odpm.commands import Subparsers, add_config_option
from odpm.config import load_settings
from odpm.errors import UserError


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("storage", help="journal backlog, quarantined batches, requeue")
    ssub = p.add_subparsers(dest="storage_command", metavar="ACTION", required=True)

    st = ssub.add_parser(
        "status",
        help="backlog, oldest unforwarded age, quarantined batches with their messages",
        description="What has not reached InfluxDB yet and every batch InfluxDB refused "
        "(with the server's message).",
    )
    _common(st)
    st.add_argument("--json", action="store_true", help="print JSON instead of text")
    st.set_defaults(run=run_status)

    rq = ssub.add_parser(
        "requeue",
        help="send quarantined batches to InfluxDB again",
        description="Mark quarantined batches to be sent again, once their cause is fixed "
        "(e.g. a conflicting field type dropped).  A batch refused again goes back to "
        "quarantine with the new message.",
    )
    _common(rq)
    which = rq.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true", help="every quarantined batch")
    which.add_argument("ids", nargs="*", type=int, default=[], metavar="ID", help="batch ids")
    rq.set_defaults(run=run_requeue)


def _common(p: argparse.ArgumentParser) -> None:
    add_config_option(p)
    p.add_argument(
        "--data-dir",
        default=None,
        metavar="DIR",
        help="journal directory (default: storage.data_dir)",
    )


def _open(args: argparse.Namespace) -> Any:
    from odpm.storage.journal import JOURNAL_FILE, Journal

    storage = load_settings(args.config).storage
    data_dir = Path(args.data_dir) if args.data_dir is not None else Path(storage.data_dir)
    path = data_dir / JOURNAL_FILE
    if not path.is_file():
        raise UserError(f"no journal at {path} (check --data-dir / storage.data_dir)")
    try:
        return Journal(
            path,
            retention_days=storage.retention_days,
            max_bytes=storage.max_bytes,
            forwarding=storage.influx.enabled,
            check=False,  # the service checks at its start; this only reads and marks
            maintenance_interval_s=3600.0,
        )
    except (OSError, ValueError) as exc:
        raise UserError(str(exc)) from None


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def run_status(args: argparse.Namespace) -> int:
    from odpm.storage.report import storage_report

    journal = _open(args)
    try:
        rep = storage_report(journal)
    finally:
        journal.close()
    if args.json:
        print(json.dumps(_jsonable(dataclasses.asdict(rep)), indent=2))
        return 0
    print(f"journal: {rep.journal} ({rep.used_bytes / 1e6:.1f} MB of {rep.max_bytes / 1e6:g} MB)")
    print(
        f"backlog: {rep.backlog_rows} scan(s), {rep.backlog_rollups} rollup(s) not yet in "
        f"InfluxDB; oldest unforwarded: {_age(rep.oldest_unforwarded_age_s)}"
        + ("" if journal.forwarding else " (storage.influx.url is not set: journal only)")
    )
    print(f"quarantined batches: {rep.quarantined_count}")
    for q in rep.quarantined:
        scans = "rollups"
        if q.first_scan_id is not None:
            scans = f"scans {q.first_scan_id}..{q.last_scan_id}"
        flag = " [requeued]" if q.requeued else ""
        print(
            f"  #{q.id}{flag} {q.created:%Y-%m-%d %H:%M:%S} UTC, {q.line_count} lines, {scans}, "
            f"HTTP {q.status}: {q.message}"
        )
    if rep.quarantined_count:
        print("send them again once fixed: odpm storage requeue --all (or IDs)")
    return 0


def run_requeue(args: argparse.Namespace) -> int:
    if not args.all and not args.ids:
        raise UserError("name the batches to requeue (IDs from `odpm storage status`) or --all")
    journal = _open(args)
    try:
        done = journal.requeue(None if args.all else list(args.ids))
    finally:
        journal.close()
    unknown = sorted(set(args.ids) - set(done))
    print(f"requeued {len(done)} batch(es){': ' + ' '.join(map(str, done)) if done else ''}")
    if unknown:
        raise UserError(f"no quarantined batch with id {' '.join(map(str, unknown))}")
    return 0
