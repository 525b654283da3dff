"""``odpm sim``: serve a simulated ODPM-96 over a pty or a TCP socket."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any

from odpm.commands import Subparsers
from odpm.errors import UserError


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "sim",
        help="run a simulated ODPM-96 (pty or TCP) or an emulated bench OSA (TCP)",
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
    p.add_argument(
        "--model",
        choices=["odpm96", "aq6370", "ms9740"],
        default="odpm96",
        help="instrument to emulate: the ODPM-96 (default) or a bench OSA, Yokogawa AQ6370 "
        "(with its login handshake) or Anritsu MS9740 (TCP only)",
    )
    physics = p.add_argument_group(
        "optical scenario (ODPM-96 only; the same settings as the SIM:... commands, "
        "docs/protocol.md)"
    )
    physics.add_argument(
        "--rolloff",
        type=float,
        default=None,
        metavar="BETA",
        help="raised-cosine roll-off of every channel, 0..1 (default 0.1; per channel: "
        "SIM:CHAN:ROLL <ch>,<beta>)",
    )
    physics.add_argument(
        "--wss-depth-db",
        type=float,
        default=None,
        metavar="DB",
        help="put a ROADM's WSS before the monitor: the ASE outside the lit channels' "
        "passbands is attenuated by DB (0..60; default: no WSS)",
    )
    physics.add_argument(
        "--wss-guard-ghz",
        type=float,
        default=None,
        metavar="GHZ",
        help="WSS passband = slot width minus this guard (default 6)",
    )
    physics.add_argument(
        "--wss-edge-ghz",
        type=float,
        default=None,
        metavar="GHZ",
        help="sigma of the WSS passbands' Gaussian edges, 0.1..20 (default 2)",
    )
    p.set_defaults(run=run)


def _odpm96(args: argparse.Namespace) -> Any:
    """The simulated ODPM-96 with the optical scenario the options ask for."""
    from drivers.simulator import OpticalModel, SimulatedOdpm96

    wss_given = [
        name
        for name in ("wss_depth_db", "wss_guard_ghz", "wss_edge_ghz")
        if getattr(args, name) is not None
    ]
    if wss_given and args.wss_depth_db is None:
        raise UserError("--wss-guard-ghz and --wss-edge-ghz shape the WSS: add --wss-depth-db")
    try:
        model = OpticalModel(seed=args.seed, rolloff=0.1 if args.rolloff is None else args.rolloff)
        if args.wss_depth_db is not None:
            model.set_wss(
                enabled=True,
                depth_db=args.wss_depth_db,
                guard_ghz=args.wss_guard_ghz,
                edge_ghz=args.wss_edge_ghz,
            )
    except ValueError as exc:
        raise UserError(str(exc)) from None
    return SimulatedOdpm96(seed=args.seed, model=model)


def _parse_host_port(text: str) -> tuple[str, int]:
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise UserError(f"--tcp wants HOST:PORT (e.g. 127.0.0.1:5025), got {text!r}")
    try:
        port = int(port_text)
    except ValueError:
        raise UserError(f"--tcp port must be a number, got {port_text!r}") from None
    if not 0 <= port <= 65535:
        raise UserError(f"--tcp port must be 0..65535, got {port}")
    return host.strip("[]"), port


def run(args: argparse.Namespace) -> int:
    # Imported here so that `odpm --help` does not load numpy and the simulator.
    from drivers.simulator import SimulatorServer

    if args.baud is not None and not 300 <= args.baud <= 4_000_000:
        raise UserError(f"--baud must be 300..4000000, got {args.baud}")
    host, port = _parse_host_port(args.tcp or "127.0.0.1:5025")
    if args.model != "odpm96":
        scenario = ("rolloff", "wss_depth_db", "wss_guard_ghz", "wss_edge_ghz")
        given = [n for n in scenario if getattr(args, n) is not None]
        if given:
            option = "--" + given[0].replace("_", "-")
            raise UserError(
                f"{option} sets the ODPM-96 simulator's optics, not --model {args.model}"
            )
        return _run_osa(args, host, port)
    device = _odpm96(args)
    try:
        if args.pty:
            server = SimulatorServer.start_pty(baud=args.baud, device=device)
        else:
            server = SimulatorServer.start_tcp(host, port, baud=args.baud, device=device)
    except OSError as exc:
        raise UserError(f"cannot start the simulator: {exc}") from None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with server:
        print(server.address, flush=True)
        if server.port is not None:
            print(
                f"# VISA: TCPIP::{server.host}::{server.port}::SOCKET; Ctrl-C stops",
                file=sys.stderr,
                flush=True,
            )
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
    return 0


def _run_osa(args: argparse.Namespace, host: str, port: int) -> int:
    """An emulated bench OSA on TCP (drivers/simulator/osa_emulator.py)."""
    from drivers.simulator.aq6370_emulator import Aq6370Emulator
    from drivers.simulator.ms9740_emulator import Ms9740Emulator
    from drivers.simulator.osa_emulator import OsaEmulator, OsaServer

    if args.pty:
        raise UserError(f"--model {args.model}: the OSA emulators serve TCP only, not a pty")
    if args.baud is not None:
        raise UserError(
            f"--model {args.model}: --baud paces serial lines; the OSA emulators are TCP"
        )
    emulator: OsaEmulator = (
        Aq6370Emulator(seed=args.seed) if args.model == "aq6370" else Ms9740Emulator(seed=args.seed)
    )
    try:
        server = OsaServer(emulator, host, port)
    except OSError as exc:
        raise UserError(f"cannot start the {args.model} emulator: {exc}") from None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with server:
        print(server.address, flush=True)
        login = " (login: any user, any password)" if args.model == "aq6370" else ""
        print(
            f"# {args.model} emulator{login}; VISA: {server.visa_address}; Ctrl-C stops",
            file=sys.stderr,
            flush=True,
        )
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
    return 0
