"""API and service capacity benchmark.

1. ``/latest`` against a bare FastAPI route returning a constant, in the same server
   process (real uvicorn, one simulated device), driven by ``wrk`` (Debian package
   ``wrk``) when installed, else by a concurrent httpx client in this process: requests/s
   and p99 latency of each, and their ratio (target >= 0.7).  The httpx client tops out
   near 200 req/s on this machine, well below the server, so its ratio says little; the
   script says which client it used.
2. The largest number of simulated ODPM-96s in trace mode at 1 Hz that one service
   process sustains with every scan stored and no growing journal backlog (target >= 200).
   The simulators run in a separate process, so the figure measures the service.

Run: ``python3 bench/api.py`` (about 2-3 minutes on a 2-core machine).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CONCURRENCY = 32
HTTP_SECONDS = 4.0
DEVICE_STEPS = (50, 100, 200, 300)
STEP_SECONDS = 20.0
#: Simulators per simulator process: the simulator server waits with select(),
#: which cannot watch file descriptors above 1024 (4 per simulated device).
SIMS_PER_PROCESS = 100


# --- child processes ---------------------------------------------------------------------


def serve_http(port: int, data_dir: str) -> None:
    """The server under test: the real app plus a bare constant route."""
    import uvicorn

    from api.app import create_app
    from odpm.config import Settings, StorageConfig
    from odpm.service import Service

    settings = Settings(storage=StorageConfig(data_dir=Path(data_dir)))
    service = Service.from_settings(settings, simulate=1)
    app = create_app(service)

    @app.get("/bare")
    async def bare() -> dict[str, int]:
        return {"ok": 1}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def serve_simulators(count: int) -> None:
    """``count`` simulated ODPM-96s on loopback TCP; prints addresses, runs until stdin closes."""
    from drivers.simulator.device import SimulatedOdpm96
    from drivers.simulator.server import SimulatorServer

    servers = [
        SimulatorServer.start_tcp("127.0.0.1", 0, device=SimulatedOdpm96(seed=i))
        for i in range(count)
    ]
    print(json.dumps([s.address for s in servers]), flush=True)
    sys.stdin.read()
    for s in servers:
        s.close()


# --- part 1: HTTP ------------------------------------------------------------------------


async def _load(url: str, seconds: float) -> tuple[float, float, int]:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(limits=limits, timeout=10) as client:

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                t = time.perf_counter()
                r = await client.get(url)
                latencies.append(time.perf_counter() - t)
                if r.status_code != 200:
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        elapsed = time.perf_counter() - started
    p99 = statistics.quantiles(latencies, n=100)[98]
    return len(latencies) / elapsed, p99, errors


_WRK_UNITS_S = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def _load_wrk(url: str, seconds: float) -> tuple[float, float, int]:
    """requests/s, p99 latency (s) and non-2xx/socket errors, measured by wrk."""
    out = subprocess.run(
        ["wrk", "-t1", f"-c{CONCURRENCY}", f"-d{seconds:g}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99_m = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.MULTILINE)
    p99 = float(p99_m.group(1)) * _WRK_UNITS_S[p99_m.group(2)] if p99_m else float("nan")
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses:\s+(\d+)", out))
    for m in re.findall(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    ):
        errors += sum(int(n) for n in m)
    return rps, p99, errors


def bench_http() -> None:
    from tests.support.influxd import free_port

    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(
            [sys.executable, __file__, "--serve-http", str(port), tmp], cwd=ROOT
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(f"{base}/api/v1/devices/sim1/latest").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("server did not start")
                time.sleep(0.2)
            use_wrk = shutil.which("wrk") is not None

            def load(url: str) -> tuple[float, float, int]:
                if use_wrk:
                    return _load_wrk(url, HTTP_SECONDS)
                return asyncio.run(_load(url, HTTP_SECONDS))

            results: dict[str, list[tuple[float, float, int]]] = {"bare": [], "latest": []}
            for _ in range(3):  # alternate, so drift affects both alike
                results["bare"].append(load(f"{base}/bare"))
                results["latest"].append(load(f"{base}/api/v1/devices/sim1/latest"))
        finally:
            proc.terminate()
            proc.wait(15)
    best = {k: max(v, key=lambda r: r[0]) for k, v in results.items()}
    client = "wrk" if use_wrk else "httpx (install wrk: this client is the bottleneck)"
    print(f"HTTP, {CONCURRENCY} concurrent connections, client {client} on the same machine")
    for name in ("bare", "latest"):
        rps, p99, errors = best[name]
        print(f"  {name:7s} {rps:8.0f} req/s   p99 {p99 * 1e3:6.1f} ms   errors {errors}")
    ratio = best["latest"][0] / best["bare"][0]
    print(f"  /latest / bare route throughput ratio: {ratio:.2f} (target >= 0.70)")


# --- part 2: devices -----------------------------------------------------------------------


def bench_devices(steps: tuple[int, ...] = DEVICE_STEPS) -> None:
    from odpm.config import DeviceConfig, Settings, StorageConfig
    from odpm.service import Service

    print(
        f"\nDevices in trace mode at 1 Hz, {STEP_SECONDS:g} s per step "
        "(simulators in another process)"
    )
    best = 0
    for n in steps:
        procs = []
        addresses: list[str] = []
        for first in range(0, n, SIMS_PER_PROCESS):
            sims = subprocess.Popen(
                [sys.executable, __file__, "--serve-sims", str(min(SIMS_PER_PROCESS, n - first))],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                cwd=ROOT,
            )
            assert sims.stdout is not None
            addresses += json.loads(sims.stdout.readline())
            procs.append(sims)
        with tempfile.TemporaryDirectory() as tmp:
            devices = [
                DeviceConfig(id=f"d{i:03d}", address=a, mode="trace", interval_s=1.0)
                for i, a in enumerate(addresses)
            ]
            settings = Settings(devices=devices, storage=StorageConfig(data_dir=Path(tmp)))
            service = Service.from_settings(settings)
            service.start()
            try:
                time.sleep(3.0)  # connect, first scans
                s0 = sum(d.readings_stored for d in service.devices.values())
                t0 = time.monotonic()
                time.sleep(STEP_SECONDS)
                elapsed = time.monotonic() - t0
                s1 = sum(d.readings_stored for d in service.devices.values())
                errors = sum(d.snapshot().counters["errors"] for d in service.devices.values())
                failed = sum(d.processing_errors for d in service.devices.values())
                # Appends block until committed, so a journal that cannot keep up
                # shows as stored < expected; the writer queue is the only backlog.
                lag_s = max(
                    (time.time() - d.latest.value.time.timestamp())
                    for d in service.devices.values()
                    if d.latest is not None
                )
            finally:
                service.stop()
                for sims in procs:
                    assert sims.stdin is not None
                    sims.stdin.close()
                    sims.wait(30)
        expected = n * elapsed
        stored = s1 - s0
        ratio = stored / expected
        ok = ratio >= 0.97 and failed == 0 and errors == 0 and lag_s < 3.0
        print(
            f"  {n:4d} devices: stored {stored:6d} / expected {expected:7.0f} scans "
            f"({ratio:.3f}), device errors {errors}, processing errors {failed}, "
            f"oldest latest reading {lag_s:.1f} s, {'sustained' if ok else 'NOT sustained'}"
        )
        if ok:
            best = n
        else:
            break
    print(f"  largest sustained: {best} devices (target >= 200)")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--serve-http", nargs=2, metavar=("PORT", "DIR"))
    p.add_argument("--serve-sims", type=int)
    p.add_argument("--skip-devices", action="store_true")
    p.add_argument("--skip-http", action="store_true")
    p.add_argument("--steps", type=int, nargs="+", default=list(DEVICE_STEPS))
    args = p.parse_args()
    if args.serve_http:
        serve_http(int(args.serve_http[0]), args.serve_http[1])
    elif args.serve_sims:
        serve_simulators(args.serve_sims)
    else:
        if not args.skip_http:
            bench_http()
        if not args.skip_devices:
            bench_devices(tuple(args.steps))


if __name__ == "__main__":
    main()
