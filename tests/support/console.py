"""A real ``odpm serve --simulate 2`` and headless Chromium, for the lab console's tests
and its soak benchmark.

The service runs as a subprocess on a free port with a config naming one API key
(:data:`API_KEY`), journal only (no InfluxDB); its simulators are reached for
``SIM:`` commands at the addresses ``GET /api/v1/devices`` reports.  Chromium is
Debian's ``/usr/bin/chromium`` driven by Playwright (``./scripts/test`` installs it).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.influxd import free_port
from tests.support.waiting import wait_for

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
API_KEY = "console-test-key"
MISSING_CHROMIUM = "chromium not installed (Debian: apt-get install chromium; ./scripts/test does it)"


def chromium_path() -> str | None:
    """The system Chromium, if installed."""
    if os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    return shutil.which("chromium")


@dataclass
class ConsoleServer:
    proc: subprocess.Popen[bytes]
    base_url: str
    log_path: Path
    http: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.http = httpx.Client(base_url=self.base_url, timeout=10.0)

    def device(self, dev_id: str) -> dict[str, Any]:
        r = self.http.get(f"/api/v1/devices/{dev_id}")
        r.raise_for_status()
        body: dict[str, Any] = r.json()
        return body

    def scans(self, dev_id: str) -> int:
        return int(self.device(dev_id)["counters"]["scans"])

    def sim_command(self, dev_id: str, *commands: str) -> None:
        """Send ``SIM:`` commands to a device's simulator; fail on one it refused."""
        address = self.device(dev_id)["address"]
        host, _, port = address.removeprefix("socket://").rpartition(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            reader = sock.makefile("rb")
            for cmd in commands:
                sock.sendall(cmd.encode("ascii") + b"\n")
            sock.sendall(b"SYST:ERR?\n")
            answer = reader.readline().decode("ascii").strip()
            reader.close()
        if not answer.startswith("0,"):
            raise AssertionError(f"simulator refused {commands}: {answer}")


@contextlib.contextmanager
def console_server(tmp: Path, extra_args: tuple[str, ...] = ()) -> Iterator[ConsoleServer]:
    """``odpm serve --simulate 2`` (trace mode, 1 scan/s) until the block ends."""
    port = free_port()
    digest = hashlib.sha256(API_KEY.encode()).hexdigest()
    config = tmp / "odpm.toml"
    config.write_text(
        f'[api]\napi_key_sha256 = ["{digest}"]\n[storage]\ndata_dir = "{tmp / "data"}"\n'
    )
    cmd = [
        sys.executable, "-m", "odpm", "serve", "--config", str(config),
        "--simulate", "2", "--port", str(port), *extra_args,
    ]  # fmt: skip
    log_path = tmp / "serve.log"
    log = log_path.open("wb")
    env = {**os.environ, "ODPM_CONFIG": ""}
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp)
    server = ConsoleServer(proc, f"http://127.0.0.1:{port}", log_path)
    try:

        def both_scanning() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"odpm serve exited: {log_path.read_text()[-2000:]}")
            r = server.http.get("/api/v1/devices")
            return r.status_code == 200 and all(
                d["state"] == "running" and d["counters"]["scans"] > 0 for d in r.json()
            )

        wait_for(both_scanning, 60, "both simulated devices scanning")
        yield server
    finally:
        server.http.close()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        log.close()


def js_heap_used_bytes(cdp: Any) -> int:
    """The page's JS heap after a full garbage collection (Chrome DevTools Protocol)."""
    cdp.send("HeapProfiler.collectGarbage")
    usage = cdp.send("Runtime.getHeapUsage")
    return int(usage["usedSize"])


def upsampled_trace(body: bytes, points: int) -> dict[str, Any]:
    """A TraceOut resampled onto ``points`` frequencies (linear interpolation in dB).

    The simulator's trace has 3,881 points; the soak needs the 17,000 of a fine
    scan.  Only the page's copy is resampled: the service and its trace are real.
    """
    import json

    import numpy as np

    trace = json.loads(body)
    f = np.asarray(trace["frequency_thz"], dtype=np.float64)
    p = np.asarray([np.nan if v is None else v for v in trace["power_dbm"]], dtype=np.float64)
    fine = np.linspace(f[0], f[-1], points)
    ok = np.isfinite(p)
    out = np.interp(fine, f[ok], p[ok])
    trace["frequency_thz"] = np.round(fine, 6).tolist()
    trace["power_dbm"] = np.round(out, 3).tolist()
    return dict(trace)
