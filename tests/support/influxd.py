"""A real ``influxd`` (1.x, Debian package ``influxdb``) for tests and benchmarks.

Started from ``influxd config``'s own defaults with reporting off, every
listener on 127.0.0.1 (HTTP on a free port, the RPC bind address too) and all
directories inside a temporary folder, so tests never touch a system install.
:meth:`InfluxServer.kill` and :meth:`InfluxServer.start` on the same data dir
are what outage tests use.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def influxd_path() -> str | None:
    return shutil.which("influxd")


def make_config(default_config: str, root: Path, http_port: int, rpc_port: int) -> str:
    """Rewrite ``influxd config`` output for an isolated, loopback-only server."""
    cfg = default_config
    cfg = re.sub(r"(?m)^reporting-disabled\s*=.*$", "reporting-disabled = true", cfg)
    if "reporting-disabled" not in cfg:
        cfg = "reporting-disabled = true\n" + cfg
    cfg = re.sub(r"(?m)^bind-address\s*=.*$", f'bind-address = "127.0.0.1:{rpc_port}"', cfg)
    cfg = re.sub(r'(?m)^(\s*)dir = "[^"]*/meta"', rf'\1dir = "{root}/meta"', cfg)
    cfg = re.sub(r'(?m)^(\s*)dir = "[^"]*/data"', rf'\1dir = "{root}/data"', cfg)
    cfg = re.sub(r'(?m)^(\s*)wal-dir = "[^"]*"', rf'\1wal-dir = "{root}/wal"', cfg)
    # Only the [http] section's bind-address is indented.
    cfg = re.sub(
        r'(?m)^(\s+)bind-address = ":8086"', rf'\1bind-address = "127.0.0.1:{http_port}"', cfg
    )
    cfg = re.sub(r"(?m)^(\s*)store-enabled = true", r"\1store-enabled = false", cfg)
    cfg = re.sub(r"(?m)^(\s*)log-enabled = true", r"\1log-enabled = false", cfg)
    cfg = re.sub(r"(?m)^(\s*)query-log-enabled = true", r"\1query-log-enabled = false", cfg)
    cfg = re.sub(r'(?m)^(\s*)bind-socket = "[^"]*"', rf'\1bind-socket = "{root}/influxd.sock"', cfg)
    return cfg


class InfluxServer:
    """One influxd process on a free loopback port with its own data dir."""

    def __init__(self, root: Path, binary: str | None = None, *, auth: bool = False) -> None:
        found = binary or influxd_path()
        if found is None:
            raise FileNotFoundError("influxd is not installed (Debian: apt-get install influxdb)")
        self.binary = found
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.http_port = free_port()
        self.rpc_port = free_port()
        default = subprocess.run(
            [self.binary, "config"], capture_output=True, text=True, check=True, timeout=30
        ).stdout
        self.config_path = root / "influxdb.conf"
        cfg = make_config(default, root, self.http_port, self.rpc_port)
        if auth:  # [http] auth-enabled: users and privileges are checked
            cfg = re.sub(r"(?m)^(\s*)auth-enabled = false", r"\1auth-enabled = true", cfg)
        self.config_path.write_text(cfg)
        self.log_path = root / "influxd.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, timeout_s: float = 30.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [self.binary, "-config", str(self.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "INFLUXDB_REPORTING_DISABLED": "true"},
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"influxd exited with {self.proc.returncode}; log: {self.log_path}\n"
                    + self.log_path.read_text(errors="replace")[-2000:]
                )
            if self.ping():
                return
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"influxd did not answer /ping within {timeout_s} s ({self.log_path})")

    def ping(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/ping", timeout=1) as r:
                return bool(r.status == 204)
        except (urllib.error.URLError, OSError):
            return False

    def kill(self) -> None:
        """SIGKILL, as a crash or a pulled plug would: no flush, no goodbye."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    # -- small helpers for tests: plain HTTP, so they do not depend on our code ----------

    def query(self, q: str, db: str | None = None, auth: tuple[str, str] | None = None) -> Any:
        """Run InfluxQL over ``/query`` (as user ``auth``) and return the decoded JSON."""
        import json

        params = {"q": q, "epoch": "u"}
        if db:
            params["db"] = db
        data = urllib.parse.urlencode(params).encode()
        req = urllib.request.Request(self.url + "/query", data=data, method="POST")
        if auth:
            import base64

            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())

    def write(self, lines: str, db: str, precision: str = "u") -> int:
        qs = urllib.parse.urlencode({"db": db, "precision": precision})
        req = urllib.request.Request(f"{self.url}/write?{qs}", data=lines.encode(), method="POST")
        with urllib.request.urlopen(req, timeout=30) as r:
            return int(r.status)

    def create_database(self, db: str) -> None:
        self.query(f'CREATE DATABASE "{db}"')

    def drop_database(self, db: str) -> None:
        with contextlib.suppress(urllib.error.URLError):
            self.query(f'DROP DATABASE "{db}"')
