"""OSA trace transfer benchmark: a 10,001-point AQ6370 trace in REAL,64 beside ASCII.

Reads trace A (``:TRACe:X? TRA`` and ``:TRACe:Y? TRA``) of one sweep from the
AQ6370 emulator over a real TCP socket, alternately as IEEE 488.2 REAL,64
blocks and as ASCII text, through the driver (transfer and parsing; the sweep
itself is not timed), and prints the median time of each, the bytes on the
wire, and the ASCII / binary ratio.  Both are measured in the same run on the
same socket.  Runs in a few seconds.

    python3 bench/osa_transfer.py [--points 10001] [--repeats 15]
"""

from __future__ import annotations

import argparse
import statistics
import time

from drivers.aq6370 import Aq6370
from drivers.registry import open_driver
from drivers.simulator.aq6370_emulator import Aq6370Emulator
from drivers.simulator.osa_emulator import OsaServer


def _median_read_s(driver: Aq6370, fmt: str, repeats: int) -> tuple[float, int]:
    driver.trace_format = "binary" if fmt == "binary" else "ascii"
    driver.configure()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        x, y = driver.read_sweep()
        times.append(time.perf_counter() - t0)
    assert x.size == y.size
    return statistics.median(times), x.size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=10001)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    emulator = Aq6370Emulator(seed=1, points=args.points, sweep_time_s=0.0)
    with OsaServer(emulator) as server:
        driver = open_driver("aq6370", server.address, timeout_s=30.0)
        assert isinstance(driver, Aq6370)
        try:
            driver.identify()
            driver.sweep()
            results = {f: _median_read_s(driver, f, args.repeats) for f in ("binary", "ascii")}
            emulator.binary = False  # the ASCII size is that of the emulator's own reply
            wire = {
                "binary": 2 * (8 * args.points + len(str(8 * args.points)) + 4),
                "ascii": sum(
                    len(emulator.values_reply(v))
                    for v in (emulator.wavelength_nm * 1e-9, emulator.level_dbm)
                ),
            }
        finally:
            driver.close()
    for fmt, (seconds, points) in results.items():
        print(
            f"{fmt:6s}: {points} points, X and Y, {wire[fmt] / 1e3:7.1f} kB on the wire, "
            f"median {seconds * 1e3:7.2f} ms"
        )
    ratio = results["ascii"][0] / results["binary"][0]
    print(f"ASCII / REAL,64 transfer time: {ratio:.1f}x")


if __name__ == "__main__":
    main()
