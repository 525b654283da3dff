"""Simulator scan cost: a trace scan with the ROADM's WSS stage on, beside the plain line.

The simulator caches the spectrum (WSS transmission, every signal through it, the RBW and
port convolutions) until the scenario changes, so a scan should cost a copy and a few random
numbers whatever the physics.  This prints, for the default 80-channel line and for 32 GBd
channels behind a 20 dB WSS, the median time of

* a scan (``read_trace_dbm``) on an unchanged scenario,
* a scenario change followed by a scan (the cache rebuilt),

and the ratios WSS / plain, all measured in the same run.  Runs in a few seconds.

    python3 bench/simulator.py [--repeats 200]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from drivers.simulator import OpticalModel


def _median_s(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _model(wss: bool) -> OpticalModel:
    m = OpticalModel(seed=1, wss=wss, wss_depth_db=20.0)
    if wss:
        for ch in range(1, m.plan.count + 1):
            m.set_symbol_rate(ch, 32.0)
    m.read_trace_dbm()
    return m


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    results = {}
    for name, wss in (("plain", False), ("wss", True)):
        m = _model(wss)
        scan = _median_s(m.read_trace_dbm, args.repeats)

        def change_and_scan(m: OpticalModel = m, toggle: list[bool] = [False]) -> None:  # noqa: B006
            toggle[0] = not toggle[0]
            m.set_offset(40, 0.5 if toggle[0] else -0.5)
            m.read_trace_dbm()

        rebuild = _median_s(change_and_scan, max(args.repeats // 10, 5))
        results[name] = (scan, rebuild)
        print(f"{name:6s} scan {scan * 1e3:7.3f} ms   change + scan {rebuild * 1e3:7.2f} ms")
    (s0, r0), (s1, r1) = results["plain"], results["wss"]
    print(f"ratio wss/plain: scan {s1 / s0:.2f}x, change + scan {r1 / r0:.2f}x")


if __name__ == "__main__":
    main()
