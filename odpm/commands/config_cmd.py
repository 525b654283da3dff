"""``odpm config check`` and ``odpm config hash-key``."""

from __future__ import annotations

import argparse
import getpass
import sys

from odpm.commands import Subparsers, add_config_option
from odpm.config import hash_api_key, load_settings, redact_url, resolve_config_path


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("config", help="check a config file, make API key hashes")
    csub = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)

    check = csub.add_parser(
        "check",
        help="validate a config file and summarise it",
        description="Validate a config file (and ODPM_ environment overrides); "
        "exit 0 and print a summary when valid, one error line and exit 2 when not.",
    )
    check.add_argument("file", nargs="?", default=None, help="config file (default: --config)")
    add_config_option(check)
    check.set_defaults(run=run_check)

    hk = csub.add_parser(
        "hash-key",
        help="print the SHA-256 hash of an API key for api.api_key_sha256",
        description="Reads the key from the argument, or from stdin / a prompt when omitted "
        "(so it does not land in shell history).",
    )
    hk.add_argument("key", nargs="?", default=None)
    hk.set_defaults(run=run_hash_key)


def run_check(args: argparse.Namespace) -> int:
    path = resolve_config_path(args.file or args.config)
    settings = load_settings(path)
    where = str(path) if path else "built-in defaults"
    influx = settings.storage.influx
    print(f"{where}: OK")
    print(f"  devices: {len(settings.devices)}")
    for d in settings.devices:
        plan = d.plan.to_plan()
        widths = plan.widths_ghz
        slots = (
            f"{plan.count} flex-grid channels of {widths.min():g}-{widths.max():g} GHz"
            if plan.is_flex
            else f"{plan.count} channels x {plan.spacing_ghz:g} GHz"
        )
        print(
            f"    {d.id}: {d.driver} at {d.address} ({d.transport}), mode {d.mode}, "
            f"every {d.interval_s:g} s, {slots}"
        )
    print(f"  journal: {settings.storage.data_dir} (keep {settings.storage.retention_days:g} days)")
    print(
        f"  influxdb: {redact_url(influx.url)} ({influx.dialect}, db {influx.database})"
        if influx.enabled
        else "  influxdb: not configured (journal only)"
    )
    print(
        f"  api: {settings.api.host}:{settings.api.port}, "
        f"{len(settings.api.api_key_sha256)} API key(s)"
    )
    return 0


def run_hash_key(args: argparse.Namespace) -> int:
    key = args.key
    if key is None:
        try:
            key = getpass.getpass("API key: ") if sys.stdin.isatty() else sys.stdin.readline()
        except EOFError:  # Ctrl-D at the prompt: nothing typed, not a crash
            print("\nodpm config hash-key: no key given (end of input)", file=sys.stderr)
            return 2
        key = key.strip()
    if not key:
        print("odpm config hash-key: error: the key is empty", file=sys.stderr)
        return 2
    print(hash_api_key(key))
    return 0
