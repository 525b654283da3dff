"""Console soak: the device view open for 10 minutes at 1 scan/s with a 17,000-point trace.

Starts ``odpm serve --simulate 2`` and headless Chromium (as the console tests do),
opens the device view of ``sim1`` and prints the page's JS heap (after a forced
garbage collection) after the first minute and at the end, and their ratio
(target: within 20 %, i.e. ratio <= 1.20), with the spectra drawn per second.

    python3 bench/console_soak.py [--minutes 10] [--baseline-s 60]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.console import (  # noqa: E402
    CHROMIUM_ARGS,
    chromium_path,
    console_server,
    run_soak,
)

#: The acceptance bound: the heap at the end within 20 % of the heap after a minute.
MAX_HEAP_RATIO = 1.20


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--baseline-s", type=float, default=60.0)
    ap.add_argument("--points", type=int, default=17_000)
    args = ap.parse_args()
    exe = chromium_path()
    if exe is None:
        print("chromium not installed (apt-get install chromium)", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    with (
        tempfile.TemporaryDirectory() as tmp,
        console_server(Path(tmp)) as server,
        sync_playwright() as p,
    ):
        browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        try:
            result = run_soak(
                browser,
                server,
                baseline_s=args.baseline_s,
                total_s=args.minutes * 60,
                trace_points=args.points,
                report=print,
            )
        finally:
            browser.close()
    verdict = "ok" if result.ratio <= MAX_HEAP_RATIO else "FAIL"
    print(f"heap ratio {result.ratio:.3f} (target <= {MAX_HEAP_RATIO}): {verdict}")
    return 0 if verdict == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
