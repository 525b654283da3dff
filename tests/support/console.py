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
MISSING_CHROMIUM = (
    "chromium not installed (Debian: apt-get install chromium; ./scripts/test does it)"
)


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
    #: The service locks reads too (``api.read_requires_key``): the client sends the key.
    reads_locked: bool = False
    http: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        headers = {"Authorization": f"Bearer {API_KEY}"} if self.reads_locked else {}
        self.http = httpx.Client(base_url=self.base_url, timeout=10.0, headers=headers)

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

    def sim_query(self, dev_id: str, query: str) -> str:
        """One answer line of a device's simulator to a query (``SIM:TRUT:POW?``)."""
        address = self.device(dev_id)["address"]
        host, _, port = address.removeprefix("socket://").rpartition(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            reader = sock.makefile("rb")
            sock.sendall(query.encode("ascii") + b"\n")
            answer = reader.readline().decode("ascii").strip()
            reader.close()
        return answer


@contextlib.contextmanager
def console_server(
    tmp: Path,
    extra_args: tuple[str, ...] = (),
    *,
    devices: int = 2,
    port: int | None = None,
    extra_config: str = "",
    reads_locked: bool = False,
) -> Iterator[ConsoleServer]:
    """``odpm serve --simulate N`` (trace mode, 1 scan/s) until the block ends;
    ``extra_config`` is appended to its config file (more ``[[devices]]``);
    ``reads_locked`` makes every read need the key too."""
    port = port or free_port()
    digest = hashlib.sha256(API_KEY.encode()).hexdigest()
    config = tmp / "odpm.toml"
    config.write_text(
        f'[api]\napi_key_sha256 = ["{digest}"]\n'
        + ("read_requires_key = true\n" if reads_locked else "")
        + f'[storage]\ndata_dir = "{tmp / "data"}"\n'
        + extra_config
    )
    cmd = [
        sys.executable, "-m", "odpm", "serve", "--config", str(config),
        "--simulate", str(devices), "--port", str(port), *extra_args,
    ]  # fmt: skip
    log_path = tmp / "serve.log"
    log = log_path.open("wb")
    env = {**os.environ, "ODPM_CONFIG": ""}
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp)
    server = ConsoleServer(proc, f"http://127.0.0.1:{port}", log_path, reads_locked)
    try:

        def all_scanning() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"odpm serve exited: {log_path.read_text()[-2000:]}")
            r = server.http.get("/api/v1/devices")
            if r.status_code != 200:
                return False
            devices = r.json()
            # A scan counted is not yet a reading: the analysis of the first scan takes a
            # while (it can take seconds since the model fit), and the page asks for it.
            return all(
                d["state"] == "running"
                and d["counters"]["scans"] > 0
                and server.http.get(f"/api/v1/devices/{d['id']}/latest").status_code == 200
                for d in devices
            )

        wait_for(all_scanning, 60 + extra_config.count("[[devices]]") / 2, "every device scanning")
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


def js_heap_floor_bytes(cdp: Any, page: Any, samples: int = 4, spacing_ms: float = 300) -> int:
    """The least of a few :func:`js_heap_used_bytes` spread over about a second.

    Why: a 17,000-point spectrum arrives every second, and while one is being fetched
    and parsed the heap holds it twice (JSON text and arrays, ~0.6 MB) even after a
    forced GC; one sample that lands there reads as 20 % growth (seen once in CI:
    3.14 -> 3.78 MB).  The least of several samples is the heap the page keeps."""
    sizes = []
    for i in range(samples):
        if i:
            page.wait_for_timeout(spacing_ms)
        sizes.append(js_heap_used_bytes(cdp))
    return min(sizes)


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


@dataclass
class SoakResult:
    heap_baseline_bytes: int
    heap_end_bytes: int
    frames: int
    seconds: float

    @property
    def ratio(self) -> float:
        return self.heap_end_bytes / self.heap_baseline_bytes


def run_soak(
    browser: Any,
    server: ConsoleServer,
    *,
    baseline_s: float,
    total_s: float,
    trace_points: int = 17_000,
    device: str = "sim1",
    report: Any = None,
) -> SoakResult:
    """Keep the device view of ``device`` open for ``total_s`` at the service's 1 scan/s,
    every spectrum resampled to ``trace_points``; the JS heap (after a forced GC, the
    least of a few samples: :func:`js_heap_floor_bytes`) at ``baseline_s`` and at the
    end.

    Uses ``page.wait_for_timeout`` (not ``time.sleep``) so that Playwright keeps
    serving the route that resamples the traces.
    """
    import json
    import time

    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    frames = 0

    def resample(route: Any) -> None:
        nonlocal frames
        resp = route.fetch()
        if resp.status != 200:
            route.fulfill(response=resp)
            return
        body = json.dumps(upsampled_trace(resp.body(), trace_points), separators=(",", ":"))
        frames += 1
        route.fulfill(response=resp, body=body)

    try:
        page = context.new_page()
        page.route("**/api/v1/devices/*/trace", resample)
        page.goto(f"{server.base_url}/#/device/{device}")
        page.wait_for_function(
            f"document.querySelector('#spectrum').dataset.points == '{trace_points}'",
            timeout=60_000,
        )
        cdp = context.new_cdp_session(page)
        started = time.monotonic()

        def wait_until(t: float) -> None:
            while (left := t - (time.monotonic() - started)) > 0:
                page.wait_for_timeout(min(left, 5.0) * 1000)

        wait_until(baseline_s)
        baseline = js_heap_floor_bytes(cdp, page)
        frames_at_baseline = frames
        if report:
            report(f"heap after {baseline_s:g} s: {baseline / 1e6:.2f} MB")
        wait_until(total_s)
        end = js_heap_floor_bytes(cdp, page)
        # The page must still be drawing the full trace, live.
        points = page.evaluate("document.querySelector('#spectrum').dataset.points")
        if points != str(trace_points):
            raise AssertionError(f"the spectrum shows {points} points, not {trace_points}")
        result = SoakResult(baseline, end, frames - frames_at_baseline, total_s - baseline_s)
        if report:
            report(
                f"heap after {total_s:g} s: {end / 1e6:.2f} MB; ratio end/baseline "
                f"{result.ratio:.3f}; {result.frames} spectra of {trace_points} points drawn "
                f"in {result.seconds:g} s ({result.frames / result.seconds:.2f}/s)"
            )
        return result
    finally:
        context.close()
