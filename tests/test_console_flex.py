"""The lab console on a flexible-grid device (ITU-T G.694.1): a real ``odpm serve`` with
one device on a separately running ``odpm sim`` (TCP) and a 50/75/150 GHz plan, in
headless Chromium: the channel table has the plan's channels and each channel's details
show its own slot width, drawn without console errors."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.console import (
    CHROMIUM_ARGS,
    MISSING_CHROMIUM,
    ConsoleServer,
    chromium_path,
    console_server,
)
from tests.support.influxd import free_port

pytestmark = pytest.mark.slow

playwright_api = pytest.importorskip("playwright.sync_api")

SLOTS = [(-100, 4), (-90, 6), (-72, 12), (-56, 4), (-48, 4)]  # 50, 75, 150, 50, 50 GHz


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleServer]:
    tmp = tmp_path_factory.mktemp("console-flex")
    port = free_port()
    sim = subprocess.Popen(
        [sys.executable, "-m", "odpm", "sim", "--tcp", f"127.0.0.1:{port}", "--seed", "3"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    plan = "".join(f"[[devices.plan.channels]]\nn = {n}\nm = {m}\n" for n, m in SLOTS)
    extra = (
        f'[[devices]]\nid = "flex"\naddress = "socket://127.0.0.1:{port}"\n'
        f'mode = "trace"\ninterval_s = 1\n{plan}'
    )
    try:
        with console_server(tmp, devices=0, extra_config=extra) as s:
            yield s
    finally:
        sim.terminate()
        sim.wait(10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    exe = chromium_path()
    if exe is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{MISSING_CHROMIUM}; CI=true requires it", pytrace=False)
        pytest.skip(MISSING_CHROMIUM)
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def test_channel_table_and_details_show_flex_slots(browser: Any, server: ConsoleServer) -> None:
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    errors: list[str] = []
    try:
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(f"uncaught: {e}"))
        page.goto(server.base_url + "/#/device/flex")
        page.wait_for_function("Number(document.querySelector('#spectrum').dataset.points||0)>0")
        rows = page.locator("#channel-table tr.chan-row")
        assert rows.count() == len(SLOTS)
        latest = server.http.get("/api/v1/devices/flex/latest").json()
        assert [c["width_ghz"] for c in latest["channels"]] == [50, 75, 150, 50, 50]
        for i, width in ((2, "150"), (1, "75"), (0, "50")):
            rows.nth(i).hover()
            detail = page.locator("#channel-detail").inner_text()
            assert re.search(rf"Slot width\s+{width} GHz", detail), detail
        rows.nth(2).click()  # selects the 150 GHz slot: the spectrum draws it
        page.wait_for_timeout(500)
        assert errors == []
    finally:
        context.close()
