"""A real, short run of the service against simulators, for tests that need its data.

Two ``python -m odpm sim --tcp`` processes stand in for two monitors; the test shapes the
optical line on each over a second SCPI connection (``SIM:`` commands, ``docs/protocol.md``):
which channels are dark, which carry wide (28 GBd) signals whose OSNR the pipeline cannot
resolve, and a channel whose power is dropped and restored so that an alarm is raised and
then cleared.  ``python -m odpm serve --no-api`` then runs as a subprocess with a config
written here, forwarding to a real ``influxd``, until every measurement the dashboards read
(``channel``, ``scan``, ``alarm``, ``channel_1m``) holds data for both devices.

Everything a test asserts afterwards is known from this setup, not read back from the data:
the line is deterministic in the ways that matter (symbol rates, dark channels, thresholds
far from the simulated values), only noise is random.
"""

from __future__ import annotations

import contextlib
import functools
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.influxd import InfluxServer

#: Symbol rates the simulator offers; 28 GBd spectra reach the 50 GHz slot's midpoints.
NARROW_GBD = 10.0
WIDE_GBD = 28.0
#: Channel power at the monitor input the simulator starts with (``OpticalModel``).
NOMINAL_POWER_DBM = -20.0


@dataclass(frozen=True)
class LinePlan:
    """How each simulated monitor's line is set up, and the alarm thresholds of the run.

    ``osnr_low_db`` sits far above any simulated OSNR, so every lit channel with a resolved
    OSNR holds an active ``osnr_low``; every channel is expected lit, so dark ones hold
    ``los``; ``dip_channel`` runs ``dip_power_dbm`` (under ``power_low_dbm``) until the
    service has forwarded its ``power_low`` alarm, then returns to nominal, clearing it.
    The other thresholds are out of reach of the simulated line, so no other alarm is
    active at the end (:attr:`required_active`, :attr:`possible_active`).
    """

    channels: int = 80
    dark: tuple[int, ...] = (5, 40, 77)
    wide: tuple[int, ...] = (20, 50, 70)
    dip_channel: int = 12
    dip_power_dbm: float = -36.0
    power_low_dbm: float = -30.0
    osnr_low_db: float = 40.0
    interval_s: float = 0.5

    def tag(self, channel: int) -> str:
        """The ``channel`` tag as the forwarder writes it (two digits, ``docs/schema.md``)."""
        return f"{channel:02d}"

    @property
    def dark_tags(self) -> frozenset[str]:
        return frozenset(self.tag(c) for c in self.dark)

    @property
    def wide_tags(self) -> frozenset[str]:
        return frozenset(self.tag(c) for c in self.wide)

    @property
    def all_tags(self) -> tuple[str, ...]:
        return tuple(self.tag(c) for c in range(1, self.channels + 1))

    @property
    def wide_neighbour_tags(self) -> frozenset[str]:
        """Wide channels and the lit channels next to them: OSNR or not, the pipeline decides.

        A wide spectrum reaches the midpoints it shares with its neighbours, so
        interpolation cannot resolve the noise there; the in-band model fit (issue 15)
        then gives the wide channel and its neighbours an OSNR when its uncertainty is
        small enough, scan by scan.  Tests neither require nor forbid OSNR for these.
        """
        near = {c + d for c in self.wide for d in (-1, 0, 1)} - set(self.dark)
        return frozenset(self.tag(c) for c in near if 1 <= c <= self.channels)

    @property
    def osnr_tags(self) -> frozenset[str]:
        """Channels that certainly have an OSNR: lit, narrow, not next to a wide one."""
        no = self.dark_tags | self.wide_neighbour_tags
        return frozenset(self.all_tags) - no

    @property
    def required_active(self) -> frozenset[tuple[str, str]]:
        """(channel, kind) of the alarms certainly active at the end of the run, per device."""
        return frozenset(
            {(t, "osnr_low") for t in self.osnr_tags} | {(t, "los") for t in self.dark_tags}
        )

    @property
    def possible_active(self) -> frozenset[tuple[str, str]]:
        """Alarms that may also be active: ``osnr_low`` where the OSNR is undecided."""
        return self.required_active | {(t, "osnr_low") for t in self.wide_neighbour_tags}

    def setup_commands(self) -> list[str]:
        """``SIM:`` commands that shape one simulator's line before the service connects."""
        cmds = [
            f"SIM:CHAN:SRAT {c},{WIDE_GBD if c in self.wide else NARROW_GBD:g}"
            for c in range(1, self.channels + 1)
        ]
        cmds += [f"SIM:CHAN:DARK {c}" for c in self.dark]
        cmds.append(f"SIM:CHAN:POW {self.dip_channel},{self.dip_power_dbm:g}")
        return cmds

    def config_toml(self, devices: dict[str, str], data_dir: Path, influx_url: str, db: str) -> str:
        """The service config: ``devices`` maps id -> simulator address, trace mode."""
        expected = ", ".join(str(c) for c in range(1, self.channels + 1))
        out = [
            "[storage]",
            f"data_dir = {str(data_dir)!r}",
            "[storage.influx]",
            f"url = {influx_url!r}",
            f"database = {db!r}",
            "[alarms]",
            f"power_low_dbm = {self.power_low_dbm}",
            "power_high_dbm = 15.0",
            f"osnr_low_db = {self.osnr_low_db}",
            "offset_high_ghz = 15.0",
            "total_power_low_dbm = -40.0",
            "total_power_high_dbm = 25.0",
            f"expected_channels = [{expected}]",
        ]
        for dev_id, address in devices.items():
            out += [
                "[[devices]]",
                f"id = {dev_id!r}",
                f"address = {address!r}",
                'mode = "trace"',
                f"interval_s = {self.interval_s}",
            ]
        return "\n".join(out) + "\n"


class Simulator:
    """``python -m odpm sim --tcp 127.0.0.1:0`` as a subprocess, with a control connection."""

    def __init__(self, seed: int, port: int = 0) -> None:
        """``port`` 0 picks a free one; a given port restarts a "monitor" where it was."""
        cmd = [
            sys.executable, "-m", "odpm", "sim", "--tcp", f"127.0.0.1:{port}", "--seed", str(seed)
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        assert self.proc.stdout is not None
        # The first line is the address to connect to (``socket://host:port``).
        self.address = self.proc.stdout.readline().strip()
        if not self.address.startswith("socket://"):
            self.stop()
            raise RuntimeError(f"odpm sim printed {self.address!r}, not a socket:// address")
        host, _, bound = self.address.removeprefix("socket://").rpartition(":")
        self.port = int(bound)
        self._sock = socket.create_connection((host, self.port), timeout=10)
        self._reader = self._sock.makefile("rb")

    def command(self, *commands: str) -> None:
        """Send setting commands; fail with the simulator's own error if one was refused.

        ``SYST:ERR?`` after them both synchronises (the answer comes once they have acted)
        and reports a refused one (the simulator answers nothing to a bad command).
        """
        for cmd in commands:
            self._sock.sendall(cmd.encode("ascii") + b"\n")
        self._sock.sendall(b"SYST:ERR?\n")
        answer = self._reader.readline().decode("ascii").strip()
        if not answer.startswith("0,"):
            raise RuntimeError(f"simulator refused one of {commands[:3]}...: {answer}")

    def stop(self) -> int:
        with contextlib.suppress(AttributeError, OSError):
            self._reader.close()
            self._sock.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)
        finally:
            if self.proc.stdout is not None:
                self.proc.stdout.close()


@dataclass
class ServiceRun:
    """What a finished run left in InfluxDB, and how long it took."""

    db: str
    plan: LinePlan
    devices: tuple[str, ...]
    #: Newest and oldest ``scan`` point over both devices, ms since the epoch.
    first_ms: int = 0
    last_ms: int = 0
    fill_s: float = 0.0
    exit_code: int | None = None
    log: str = ""
    counts: dict[str, int] = field(default_factory=dict)


def _series(server: InfluxServer, db: str, query: str) -> list[dict[str, Any]]:
    result = server.query(query, db=db)
    (statement,) = result["results"]
    if "error" in statement:
        raise RuntimeError(f"InfluxDB: {statement['error']}\n{query}")
    return list(statement.get("series", []))


def _devices_with(server: InfluxServer, db: str, query: str) -> set[str]:
    """Devices (tag ``device``) for which a ``... GROUP BY "device"`` query has a row."""
    return {s["tags"]["device"] for s in _series(server, db, query) if s.get("values")}


def _all_devices(server: InfluxServer, db: str, query: str, want: set[str]) -> bool:
    return _devices_with(server, db, query) == want


def _wait(
    what: str, deadline: float, proc: subprocess.Popen[bytes], log: Path, done: Callable[[], bool]
) -> None:
    """Poll ``done`` until true; on a dead service or the deadline, fail with its log's tail."""
    while not done():
        if proc.poll() is not None:
            problem = f"odpm serve exited ({proc.returncode}) while waiting for {what}"
        elif time.monotonic() > deadline:
            problem = f"{what}: not in InfluxDB before the deadline"
        else:
            time.sleep(0.5)
            continue
        lines = log.read_text(errors="replace").splitlines()
        tail = "\n".join([ln for ln in lines if "HTTP Request:" not in ln][-30:])
        raise RuntimeError(f"{problem}; serve.log ends:\n{tail}")


@contextlib.contextmanager
def simulated_service_run(
    server: InfluxServer,
    db: str,
    workdir: Path,
    *,
    plan: LinePlan | None = None,
    devices: tuple[str, ...] = ("odpm-sim-1", "odpm-sim-2"),
    deadline_s: float = 120.0,
) -> Iterator[ServiceRun]:
    """Run the service on simulators until InfluxDB holds every measurement, then stop it.

    The database must exist (the forwarder writes to it, it does not create it).  Yields
    after ``odpm serve`` has exited on SIGTERM (its code in ``exit_code``, its output in
    ``log``) and the simulators are stopped; raises if a measurement is missing at the
    deadline or the service died.
    """
    plan = plan or LinePlan()
    run = ServiceRun(db, plan, devices)
    sims: list[Simulator] = []
    proc: subprocess.Popen[bytes] | None = None
    log_path = workdir / "serve.log"
    try:
        for seed in range(len(devices)):
            sims.append(Simulator(seed=101 + seed))
        for sim in sims:
            sim.command(*plan.setup_commands())
        config = workdir / "odpm.toml"
        config.write_text(
            plan.config_toml(
                {d: s.address for d, s in zip(devices, sims, strict=True)},
                workdir / "data",
                server.url,
                db,
            )
        )
        started = time.monotonic()
        deadline = started + deadline_s
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "odpm", "serve", "--config", str(config), "--no-api"],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=workdir,
            )
        want = set(devices)
        dip = plan.tag(plan.dip_channel)

        def alarm_forwarded(active: bool) -> bool:
            q = (
                f'SELECT count("value") FROM "alarm" WHERE "channel" = \'{dip}\' AND '
                f'"kind" = \'power_low\' AND "active" = {str(active).lower()} GROUP BY "device"'
            )
            return _devices_with(server, db, q) == want

        _wait(
            "power_low raised on the dipped channel",
            deadline,
            proc,
            log_path,
            lambda: alarm_forwarded(True),
        )
        for sim in sims:
            sim.command(f"SIM:CHAN:POW {plan.dip_channel},{NOMINAL_POWER_DBM:g}")
        _wait("power_low cleared", deadline, proc, log_path, lambda: alarm_forwarded(False))
        for measurement, fld in (
            ("channel", "present"),
            ("scan", "lit_channels"),
            ("channel_1m", "samples"),
        ):
            q = f'SELECT count("{fld}") FROM "{measurement}" GROUP BY "device"'
            _wait(
                measurement,
                deadline,
                proc,
                log_path,
                functools.partial(_all_devices, server, db, q, want),
            )
        run.fill_s = time.monotonic() - started
        proc.send_signal(signal.SIGTERM)
        run.exit_code = proc.wait(30)
        run.log = log_path.read_text(errors="replace")
        for sim in sims:
            sim.stop()
        sims.clear()

        (times,) = _series(server, db, 'SELECT "lit_channels" FROM "scan"') or [{"values": []}]
        stamps = [int(row[0]) // 1000 for row in times["values"]]  # epoch=u
        run.first_ms, run.last_ms = min(stamps), max(stamps)
        for measurement in ("channel", "scan", "alarm", "channel_1m"):
            (s,) = _series(server, db, f'SELECT count(*) FROM "{measurement}"')
            run.counts[measurement] = max(v for v in s["values"][0][1:] if v is not None)
        yield run
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for sim in sims:
            sim.stop()
