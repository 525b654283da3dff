"""Take the README's console screenshots (run by ``scripts/screenshots``)."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.console import (  # noqa: E402
    API_KEY,
    CHROMIUM_ARGS,
    chromium_path,
    console_server,
)
from tests.support.waiting import wait_for  # noqa: E402

OUT = ROOT / "docs" / "img"
#: Scans to let pass so the history chart has some buckets and alarms are raised.
SETTLE_MS = 25_000


def main() -> int:
    exe = chromium_path()
    if exe is None:
        print("chromium not installed (apt-get install chromium)", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, console_server(Path(tmp), devices=6) as server:
        # A reference taken before the faults, so that the difference panel shows them.
        traces = "/api/v1/devices/sim1/traces"
        wait_for(lambda: server.http.get(traces).json()["traces"], 60, "a stored trace")
        first = server.http.get(traces).json()["traces"][0]
        server.http.put(
            "/api/v1/devices/sim1/references/golden",
            json={"trace_id": first["id"]},
            headers={"Authorization": f"Bearer {API_KEY}"},
        ).raise_for_status()
        # A line with faults to look at: a dark channel, a weak one, a noisy device.
        server.sim_command("sim1", "SIM:CHAN:POW 44,-33")
        server.sim_command("sim3", "SIM:CHAN:DARK 17")
        server.sim_command("sim1", "SIM:CHAN:DARK 30")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(server.base_url + "/#/device/sim1")
            page.wait_for_timeout(SETTLE_MS)
            page.locator('#channel-table tr.chan-row[data-channel="44"]').click()
            page.wait_for_function(
                "document.querySelector('#history-chart').dataset.channel === '44'"
            )
            # The reference against the newest stored trace (kept on the ch 30 alarm), and
            # the spectrum stored when channel 30 went dark.
            page.select_option("#reference-select", "golden")
            page.wait_for_function("document.querySelectorAll('#diff-bars .diff-bar').length")
            page.locator('#alarm-list li[data-channel="30"] a.trace-link').first.click()
            page.wait_for_function("document.querySelector('#spectrum').dataset.storedId")
            page.wait_for_timeout(2000)
            page.screenshot(path=str(OUT / "console-device.png"), full_page=True)
            page.goto(server.base_url + "/#/")
            page.wait_for_selector("#overview-table tr.device-row >> nth=5")
            page.wait_for_timeout(3000)
            page.set_viewport_size({"width": 1600, "height": 480})
            page.screenshot(path=str(OUT / "console-overview.png"))
            browser.close()
    for name in ("console-overview.png", "console-device.png"):
        print(OUT / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
