"""Console overview at scale: 300 devices at 1 scan/s through one summary stream.

Starts ``odpm serve --simulate N`` (power mode by default: the page's load is
one summary per scan whatever the mode, and power mode leaves the 2-core box's
CPU to the browser), opens the overview in headless Chromium and, over
``--seconds``, prints:

* summary events the page received per second beside the scans the service
  made per second (ratio target ~1.0: the page keeps up, nothing dropped);
* animation frames the page painted per second (a frozen page paints none; the
  headless compositor's own rate measured on an empty page in the same run is
  the baseline);
* the share of time the page's main thread was busy (CDP ``TaskDuration``),
  with the machine's load average (the figures mean little on a loaded box);
* the longest main-thread task (``longtask`` entries, > 50 ms each) and their count;
* the JS heap at the start and the end of the window.

    python3 bench/console_overview.py [--devices 300] [--seconds 60]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.console import (  # noqa: E402
    CHROMIUM_ARGS,
    chromium_path,
    console_server,
    js_heap_used_bytes,
)
from tests.support.waiting import wait_for  # noqa: E402

#: Simulated devices per simulator process (as bench/api.py).
SIMS_PER_PROCESS = 100

#: Counts animation frames and long tasks on the page.
PROBE = """
window.__bench = {frames: 0, longest: 0, long: 0};
(function tick() { window.__bench.frames++; requestAnimationFrame(tick); })();
new PerformanceObserver((l) => {
  for (const e of l.getEntries()) {
    window.__bench.long++;
    window.__bench.longest = Math.max(window.__bench.longest, e.duration);
  }
}).observe({type: "longtask", buffered: true});
"""


def frames_per_s(page: Any, seconds: float) -> float:
    f0 = page.evaluate("window.__bench.frames")
    page.wait_for_timeout(seconds * 1000)
    return float(page.evaluate("window.__bench.frames") - f0) / seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=300)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--mode", default="power", choices=("power", "trace"))
    args = ap.parse_args()
    exe = chromium_path()
    if exe is None:
        print("chromium not installed (apt-get install chromium)", file=sys.stderr)
        return 2
    # Simulators in processes of their own, 100 each (see bench/api.py: the simulator
    # server's select() cannot watch descriptors above 1024).
    procs, addresses = start_simulators(args.devices)
    devices = "".join(
        f'[[devices]]\nid = "d{i:03d}"\naddress = "{a}"\nmode = "{args.mode}"\ninterval_s = 1.0\n'
        for i, a in enumerate(addresses)
    )
    try:
        run(args, exe, devices)
    finally:
        for sims in procs:
            assert sims.stdin is not None
            sims.stdin.close()
            sims.wait(30)
    return 0


def start_simulators(n: int) -> tuple[list[subprocess.Popen[bytes]], list[str]]:
    procs: list[subprocess.Popen[bytes]] = []
    addresses: list[str] = []
    for first in range(0, n, SIMS_PER_PROCESS):
        count = min(SIMS_PER_PROCESS, n - first)
        sims = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "api.py"), "--serve-sims", str(count)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=ROOT,
        )
        assert sims.stdout is not None
        addresses += json.loads(sims.stdout.readline())
        procs.append(sims)
    return procs, addresses


def run(args: argparse.Namespace, exe: str, devices: str) -> None:
    from playwright.sync_api import sync_playwright

    with (
        tempfile.TemporaryDirectory() as tmp,
        console_server(Path(tmp), devices=0, extra_config=devices) as server,
        sync_playwright() as p,
    ):
        browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1600, "height": 1000})
        page = context.new_page()
        page.goto(server.base_url + "/web/favicon.svg")
        page.evaluate(PROBE)
        baseline_fps = frames_per_s(page, 5)

        page = context.new_page()
        page.add_init_script(PROBE)
        cdp = context.new_cdp_session(page)
        page.goto(server.base_url + "/#/")
        wait_for(
            lambda: page.locator("#overview-table tr.device-row").count() == args.devices,
            120,
            f"{args.devices} overview rows",
        )
        page.wait_for_timeout(5000)
        received = "Number(document.querySelector('#overview-table').dataset.summaries || 0)"
        scans0 = sum(d["counters"]["scans"] for d in server.http.get("/api/v1/devices").json())
        heap0 = js_heap_used_bytes(cdp)
        cdp.send("Performance.enable")
        busy0 = main_thread_s(cdp)
        seen0 = page.evaluate(received)
        long0 = page.evaluate("window.__bench.long")
        t0 = time.monotonic()
        fps = frames_per_s(page, args.seconds)
        elapsed = time.monotonic() - t0
        seen = page.evaluate(received) - seen0
        scans = (
            sum(d["counters"]["scans"] for d in server.http.get("/api/v1/devices").json()) - scans0
        )
        busy = main_thread_s(cdp) - busy0
        heap1 = js_heap_used_bytes(cdp)
        long_tasks = page.evaluate("window.__bench.long") - long0
        longest = page.evaluate("window.__bench.longest")
        ages = page.locator("#overview-table td.age").all_inner_texts()
        browser.close()
    print(f"{args.devices} devices ({args.mode} mode, 1 scan/s), {elapsed:.0f} s window")
    print(
        f"summaries received {seen / elapsed:.1f}/s vs scans made {scans / elapsed:.1f}/s: "
        f"ratio {seen / max(scans, 1):.3f}"
    )
    print(f"frames painted {fps:.1f}/s vs {baseline_fps:.1f}/s on an empty page")
    print(f"long tasks: {long_tasks} (longest {longest:.0f} ms over the whole run)")
    print(
        f"main thread busy {busy / elapsed:.0%} of the time; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    print(f"JS heap {heap0 / 1e6:.2f} MB -> {heap1 / 1e6:.2f} MB")
    print(f"oldest 'last scan' shown at the end: {max(ages, key=_age_s)}")


def main_thread_s(cdp: Any) -> float:
    """Seconds the renderer's main thread has spent on tasks (CDP Performance metrics)."""
    metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
    return float(metrics["TaskDuration"])


def _age_s(text: str) -> float:
    number, _, unit = text.partition(" ")
    try:
        value = float(number)
    except ValueError:
        return float("inf")
    return value * {"s": 1, "min": 60, "h": 3600, "d": 86400}.get(unit, 1)


if __name__ == "__main__":
    sys.exit(main())
