"""The lab console in headless Chromium against a real ``odpm serve --simulate 2``.

One service and one browser for the module (starting them is the slow part);
each test opens its own page.  Control runs on ``sim2`` so that ``sim1`` keeps
scanning for the others.
"""

from __future__ import annotations

import json
import os
import time
import urllib.parse
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.console import (
    API_KEY,
    CHROMIUM_ARGS,
    MISSING_CHROMIUM,
    ConsoleServer,
    chromium_path,
    console_server,
    run_soak,
)
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow

playwright_api = pytest.importorskip("playwright.sync_api")


def _chromium_required() -> bool:
    return os.environ.get("CI", "").lower() == "true"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleServer]:
    with console_server(tmp_path_factory.mktemp("console")) as s:
        yield s


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    exe = chromium_path()
    if exe is None:
        if _chromium_required():
            pytest.fail(f"{MISSING_CHROMIUM}; CI=true requires it", pytrace=False)
        pytest.skip(MISSING_CHROMIUM)
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


class Page:
    """A browser page that records console errors and uncaught exceptions."""

    def __init__(self, browser: Any, server: ConsoleServer) -> None:
        self.context = browser.new_context(viewport={"width": 1600, "height": 1000})
        self.page = self.context.new_page()
        self.page.set_default_timeout(30_000)
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        # Which request failed (Chromium's console message does not say).
        self.page.on(
            "response",
            lambda r: self.errors.append(f"{r.status} {r.url}") if r.status >= 400 else None,
        )
        self.base = server.base_url

    def open(self, fragment: str = "") -> Any:
        self.page.goto(self.base + "/" + fragment)
        return self.page

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def page(browser: Any, server: ConsoleServer) -> Iterator[Page]:
    p = Page(browser, server)
    try:
        yield p
    finally:
        p.close()


def _wait_js(page: Any, expr: str, timeout_s: float = 30) -> Any:
    page.wait_for_function(expr, timeout=timeout_s * 1000)
    return page.evaluate(expr)


def test_overview_lists_both_devices_with_states_without_console_errors(
    page: Page, server: ConsoleServer
) -> None:
    p = page.open()
    rows = p.locator("#overview-table tbody tr.device-row")
    rows.nth(1).wait_for()
    assert rows.count() == 2
    assert [rows.nth(i).get_attribute("data-device") for i in range(2)] == ["sim1", "sim2"]
    for i in range(2):
        assert rows.nth(i).locator(".state").inner_text() == "running"
    # Per-scan values arrive from the summary stream: total power and lit channels.
    _wait_js(p, "document.querySelectorAll('#overview-table td.num')[1].textContent !== '—'")
    lit = rows.nth(0).locator("td").nth(5).inner_text()
    assert lit.endswith("/80")
    assert p.locator("#connection").inner_text() == "live"
    p.wait_for_timeout(1500)  # a few more stream events and polls
    assert page.errors == []


def test_device_view_draws_the_whole_trace_and_80_channel_bars(
    page: Page, server: ConsoleServer
) -> None:
    p = page.open("#/device/sim1")
    points = int(_wait_js(p, "Number(document.querySelector('#spectrum').dataset.points || 0)"))
    trace = server.http.get("/api/v1/devices/sim1/trace").json()
    assert points == len(trace["frequency_thz"]) == len(trace["power_dbm"])
    rows = p.locator("#channel-table tr.chan-row")
    assert rows.count() == 80
    assert p.locator("#channel-table tr.chan-row .barcell .fill").count() == 160  # power + OSNR
    # The bars are coloured by the thresholds the API returns (power_low -30 dBm by default).
    thresholds = server.http.get("/api/v1/thresholds").json()
    latest = server.http.get("/api/v1/devices/sim1/latest").json()
    ch = next(c for c in latest["channels"] if c["present"])
    fill = rows.nth(ch["channel"] - 1).locator(".barcell .fill").first
    expected = "bad" if ch["power_dbm"] < thresholds["power_low_dbm"] else "ok"
    assert expected in (fill.get_attribute("class") or "")
    # The spectrum canvas is drawn (uPlot), and switching to wavelength keeps every point.
    assert p.locator("#spectrum canvas").count() >= 1
    p.keyboard.press("u")
    _wait_js(p, "document.querySelector('#spectrum .u-legend')?.textContent.includes('nm')")
    p.wait_for_function(f"document.querySelector('#spectrum').dataset.points == '{points}'")
    assert page.errors == []


def test_dark_channel_shows_alarmed_within_three_scans_and_clears(
    page: Page, server: ConsoleServer
) -> None:
    p = page.open("#/device/sim1")
    row = '#channel-table tr.chan-row[data-channel="12"]'
    p.locator(row).wait_for()
    assert "alarmed" not in (p.locator(row).get_attribute("class") or "")
    before = server.scans("sim1")
    server.sim_command("sim1", "SIM:CHAN:DARK 12")
    try:
        p.wait_for_selector(f"{row}.alarmed", timeout=30_000)
        # Up to 3 scans taken after the command, plus the one that was under way.
        assert server.scans("sim1") - before <= 4
        assert "los" in p.locator(f"{row} .alarmcell").inner_text()
        active = p.locator('#alarm-list .active-alarms li[data-channel="12"]')
        assert active.count() >= 1
    finally:
        server.sim_command("sim1", "SIM:CHAN:DARK 12,OFF")
    p.wait_for_selector(f"{row}:not(.alarmed)", timeout=30_000)
    cleared = p.locator('#alarm-list .recent-alarms li.cleared[data-channel="12"]')
    cleared.first.wait_for()
    assert page.errors == []


def test_history_chart_shows_the_points_the_history_api_returns(
    page: Page, server: ConsoleServer
) -> None:
    p = page.open("#/device/sim1")
    with p.expect_response(lambda r: "/channels/5/history" in r.url) as answer:
        p.locator('#channel-table tr.chan-row[data-channel="5"]').click()
    url = urllib.parse.urlsplit(answer.value.url)
    page_points = json.loads(answer.value.body())["points"]
    p.wait_for_function("document.querySelector('#history-chart').dataset.channel === '5'")
    shown = int(p.evaluate("document.querySelector('#history-chart').dataset.points"))
    # The same query, by a script: the page shows what the public API answers.
    api = server.http.get(url.path + "?" + url.query).json()["points"]
    assert len(page_points) > 0
    assert shown == len(api) == len(page_points)
    # Keyboard: "]" selects the next channel, "d" the last day.
    p.keyboard.press("]")
    p.wait_for_function("document.querySelector('#history-chart').dataset.channel === '6'")
    assert "selected" in (p.locator('tr.chan-row[data-channel="6"]').get_attribute("class") or "")
    with p.expect_response(lambda r: "/channels/6/history" in r.url) as day:
        p.keyboard.press("d")
    q = urllib.parse.parse_qs(urllib.parse.urlsplit(day.value.url).query)
    span_s = (
        datetime.fromisoformat(q["end"][0]) - datetime.fromisoformat(q["start"][0])
    ).total_seconds()
    assert span_s == pytest.approx(86400, abs=1)
    assert page.errors == []


def test_control_explains_without_key_and_stops_acquisition_with_it(
    page: Page, server: ConsoleServer
) -> None:
    p = page.open("#/device/sim2")
    p.locator("#control-panel .needs-key").wait_for()
    assert "odpm config hash-key" in p.locator("#control-panel .needs-key").inner_text()
    assert p.locator("#control-panel button.stop").is_disabled()
    p.locator("#key-button").click()
    p.locator("#key-input").fill(API_KEY)
    p.locator("#key-form button[type=submit]").click()
    assert p.evaluate("sessionStorage.getItem('odpm.apiKey')") == API_KEY
    assert API_KEY not in p.url
    p.locator("#control-panel button.stop").click()
    try:
        wait_for(lambda: server.device("sim2")["enabled"] is False, 20, "sim2 stopped")
        # Scans stop: the counter settles (one scan may have been under way).
        settled = server.scans("sim2")
        time.sleep(3.0)
        assert server.scans("sim2") - settled <= 1
        assert "stop: done" in p.locator("#control-panel .control-result").inner_text()
    finally:
        server.http.put(
            "/api/v1/devices/sim2/acquisition",
            json={"running": True},
            headers={"Authorization": f"Bearer {API_KEY}"},
        )
    assert page.errors == []


def _blocked_outside_localhost(context: Any) -> list[str]:
    blocked: list[str] = []

    def handle(route: Any) -> None:
        host = urllib.parse.urlsplit(route.request.url).hostname
        if host == "127.0.0.1":
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    context.route("**/*", handle)
    return blocked


def test_docs_and_redoc_render_with_the_network_blocked(page: Page) -> None:
    blocked = _blocked_outside_localhost(page.context)
    p = page.open("docs")
    p.locator(".swagger-ui .info .title").wait_for()
    assert "odpm" in p.locator(".swagger-ui .info .title").inner_text()
    p.locator(".opblock-summary-path").first.wait_for()
    assert p.locator(".opblock").count() > 10
    p.goto(page.base + "/redoc")
    p.locator("redoc h1").first.wait_for()
    assert "odpm" in p.locator("redoc h1").first.inner_text()
    assert blocked == []
    assert page.errors == []


def test_console_makes_no_request_outside_the_service(page: Page) -> None:
    blocked = _blocked_outside_localhost(page.context)
    p = page.open("#/device/sim1")
    p.wait_for_function("Number(document.querySelector('#spectrum').dataset.points || 0) > 0")
    assert blocked == []


def test_console_files_ship_in_the_package() -> None:
    from api.console import WEB_DIR

    for name in ("index.html", "console.css", "js/main.js", "vendor/uplot/uPlot.esm.js"):
        assert (WEB_DIR / name).is_file(), name
    assert Path(WEB_DIR / "vendor/VERSIONS.txt").read_text().count("\n") >= 3


def _sse_events(server: ConsoleServer, path: str, count: int) -> list[tuple[str, Any]]:
    """The first ``count`` events of an SSE route, parsed."""
    events: list[tuple[str, Any]] = []
    with server.http.stream("GET", path, timeout=30.0) as resp:
        assert resp.status_code == 200
        name = "message"
        for line in resp.iter_lines():
            if line.startswith("event:"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                events.append((name, json.loads(line.split(":", 1)[1])))
                if len(events) >= count:
                    break
    return events


def test_summary_stream_carries_every_device_without_channels(server: ConsoleServer) -> None:
    events = _sse_events(server, "/api/v1/stream", 6)
    summaries = [data for name, data in events if name == "summary"]
    # The latest of each device first, then one per scan.
    assert {s["device"] for s in summaries[:2]} == {"sim1", "sim2"}
    latest = server.http.get("/api/v1/devices/sim1/latest").json()
    for s in summaries:
        assert "channels" in s and isinstance(s["channels"], int)  # a count, not the list
        assert s["channels"] == len(latest["channels"]) == 80
        assert set(s) >= {"total_power_dbm", "lit_channels", "min_osnr_db", "tilt_db", "alarms"}
        assert len(json.dumps(s)) < 1000
    assert {name for name, _ in events} <= {"summary", "alarm"}


def test_device_stream_does_not_carry_summaries(server: ConsoleServer) -> None:
    events = _sse_events(server, "/api/v1/devices/sim1/stream", 3)
    assert [name for name, _ in events] == ["reading"] * 3
    assert all(len(data["channels"]) == 80 for _, data in events)


def test_short_soak_heap_stays_within_20_percent(browser: Any, server: ConsoleServer) -> None:
    """90 s of a 17,000-point spectrum at 1 scan/s (bench/console_soak.py runs 10 min)."""
    result = run_soak(browser, server, baseline_s=30, total_s=90, report=print)
    assert result.frames >= 20  # it really was redrawing (about 1/s; generous on a busy box)
    assert result.ratio <= 1.20, (result.heap_baseline_bytes, result.heap_end_bytes)


def test_page_shows_the_outage_and_reconnects_after_a_service_restart(
    browser: Any, tmp_path: Path
) -> None:
    """Stop the service under an open device view, start it again on the same port."""
    for name in ("first", "second"):
        (tmp_path / name).mkdir()
    context = browser.new_context()
    try:
        with console_server(tmp_path / "first") as first:
            port = int(first.base_url.rsplit(":", 1)[1])
            p = context.new_page()
            p.goto(first.base_url + "/#/device/sim1")
            p.wait_for_function("document.querySelector('#connection').textContent === 'live'")
            p.wait_for_function("Number(document.querySelector('#spectrum').dataset.points) > 0")
        # The service is gone: the page says so, and marks its data stale.
        p.wait_for_function(
            "document.querySelector('#connection').className.includes('conn-down')",
            timeout=30_000,
        )
        p.wait_for_selector("#stale-banner:not([hidden])", timeout=30_000)
        restarted_ms = time.time() * 1000
        with console_server(tmp_path / "second", port=port):
            p.wait_for_function(
                "document.querySelector('#connection').textContent === 'live'", timeout=30_000
            )
            # Readings of the new process arrive, and the banner goes away.
            p.wait_for_function(
                "Date.parse(document.querySelector('#device').dataset.readingTime)"
                f" > {restarted_ms}",
                timeout=30_000,
            )
            p.wait_for_selector("#stale-banner[hidden]", state="attached", timeout=30_000)
    finally:
        context.close()


# -- the trace archive in the device view --------------------------------------------------


def _traces(server: ConsoleServer, dev: str, **query: str) -> list[dict[str, Any]]:
    r = server.http.get(f"/api/v1/devices/{dev}/traces", params=query)
    r.raise_for_status()
    traces: list[dict[str, Any]] = r.json()["traces"]
    return traces


def test_stored_trace_picked_from_the_timeline_is_drawn_whole(
    page: Page, server: ConsoleServer
) -> None:
    wait_for(lambda: _traces(server, "sim1"), 60, "a stored trace of sim1")
    p = page.open("#/device/sim1")
    items = p.locator("#archive-list li[data-trace-id]")
    items.first.wait_for()
    # Each row says why its trace was kept, in the kind's own colour class.
    for i in range(items.count()):
        kind = items.nth(i).get_attribute("data-kind")
        assert kind in ("periodic", "alarm", "manual")
        assert f"kind-{kind}" in (items.nth(i).get_attribute("class") or "")
    p.wait_for_function("Number(document.querySelector('#spectrum').dataset.points || 0) > 0")
    row = items.last  # the oldest listed
    trace_id = row.get_attribute("data-trace-id")
    row.locator("a").click()
    p.wait_for_function(f"document.querySelector('#spectrum').dataset.storedId === '{trace_id}'")
    stored = server.http.get(f"/api/v1/devices/sim1/traces/{trace_id}").json()
    shown = p.evaluate("document.querySelector('#spectrum').dataset.storedPoints")
    assert int(shown) == len(stored["frequency_thz"]) == len(stored["power_dbm"])
    assert p.evaluate("document.querySelector('#spectrum').dataset.storedResampled") == ""
    assert "selected" in (row.get_attribute("class") or "")
    assert stored["reason"] in p.locator("#stored-label").inner_text()
    # In wavelength it stays whole; "." steps to the next newer stored trace.
    p.keyboard.press("u")
    _wait_js(p, "document.querySelector('#spectrum .u-legend')?.textContent.includes('nm')")
    p.wait_for_function(
        "document.querySelector('#spectrum').dataset.storedPoints"
        f" === '{len(stored['frequency_thz'])}'"
    )
    newer = items.nth(items.count() - 2).get_attribute("data-trace-id")
    p.keyboard.press(".")
    p.wait_for_function(f"document.querySelector('#spectrum').dataset.storedId === '{newer}'")
    # The live trace keeps being drawn beside it; "c" removes the stored one.
    p.keyboard.press("c")
    p.wait_for_function("document.querySelector('#spectrum').dataset.storedId === ''")
    assert page.errors == []


def test_reference_saved_then_channel_power_changed_shows_its_delta(
    page: Page, server: ConsoleServer
) -> None:
    dev, ch = "sim2", 20
    wait_for(lambda: _traces(server, dev), 60, "a stored trace of sim2")
    p = page.open(f"#/device/{dev}")
    p.locator("#reference-panel:not([hidden])").wait_for()
    p.locator("#archive-list li[data-trace-id]").first.wait_for()
    # Without the key the page says what is missing and stores nothing.
    p.locator("#reference-name").fill("golden")
    p.locator("#reference-save").click()
    p.wait_for_function("document.querySelector('#reference-result').textContent.includes('key')")
    p.evaluate(f"sessionStorage.setItem('odpm.apiKey', '{API_KEY}')")
    p.locator("#reference-save").click()
    p.wait_for_function(
        "document.querySelectorAll('#diff-bars .diff-bar').length === 80"
        " && document.querySelector('#spectrum').dataset.reference === 'golden'"
    )
    refs = server.http.get(f"/api/v1/devices/{dev}/references").json()["references"]
    assert [r["name"] for r in refs] == ["golden"]
    truth = float(server.sim_query(dev, "SIM:TRUT:POW?").split(",")[ch - 1])
    server.sim_command(dev, f"SIM:CHAN:POW {ch},{truth - 4:.3f}")
    try:
        scan = server.http.post(
            f"/api/v1/devices/{dev}/scan", headers={"Authorization": f"Bearer {API_KEY}"}
        )
        assert scan.status_code == 200, scan.text
        manual = _traces(server, dev, reason="manual")[-1]
        # The panel compares the newest stored trace once its listing has it (10 s poll):
        # the manual one, or one stored after it (a periodic trace may follow at once).
        p.wait_for_function(
            f"Number(document.querySelector('#diff-bars').dataset.trace) >= {manual['id']}",
            timeout=40_000,
        )
        compared = int(p.evaluate("document.querySelector('#diff-bars').dataset.trace"))
        shown = float(
            p.locator(f'#diff-bars .diff-bar[data-channel="{ch}"]').get_attribute("data-delta")
            or "nan"
        )
        api = server.http.get(
            f"/api/v1/devices/{dev}/compare",
            params={"reference": "golden", "trace_id": compared},
        ).json()
        delta = next(c for c in api["channels"] if c["channel"] == ch)["power_delta_db"]
        assert shown == pytest.approx(delta, abs=0.1)
        assert delta == pytest.approx(-4, abs=1)
        others = [
            c["power_delta_db"]
            for c in api["channels"]
            if c["channel"] != ch and c["power_delta_db"] is not None
        ]
        assert max(abs(d) for d in others) < 1
    finally:
        server.sim_command(dev, f"SIM:CHAN:POW {ch},{truth:.3f}")
    # The commissioning report link names the reference.
    href = p.locator("#report-link").get_attribute("href") or ""
    assert href.startswith(f"/api/v1/devices/{dev}/report?") and "format=html" in href
    assert "reference=golden" in href
    report = server.http.get(href)
    assert report.status_code == 200 and "text/html" in report.headers["content-type"]
    assert page.errors == []


def test_alarm_link_opens_the_spectrum_stored_at_that_moment(
    page: Page, server: ConsoleServer
) -> None:
    p = page.open("#/device/sim1")
    p.locator("#archive-panel:not([hidden])").wait_for()
    server.sim_command("sim1", "SIM:CHAN:DARK 33")
    try:
        link = p.locator('#alarm-list .active-alarms li[data-channel="33"] a.trace-link')
        link.wait_for(timeout=30_000)
        event = server.http.get("/api/v1/alarms", params={"device": "sim1"}).json()
        raised = next(e for e in event["active"] if e["channel"] == 33)
        with p.expect_response(lambda r: "/trace?at=" in r.url) as answer:
            link.click()
        assert answer.value.status == 200
        opened = json.loads(answer.value.body())
        p.wait_for_function(
            f"document.querySelector('#spectrum').dataset.storedId === '{opened['id']}'"
        )
        # The same question by a script gives the same stored trace.
        api = server.http.get("/api/v1/devices/sim1/trace", params={"at": raised["time"]}).json()
        assert api["id"] == opened["id"]
        assert (
            abs(
                (
                    datetime.fromisoformat(api["time"]) - datetime.fromisoformat(raised["time"])
                ).total_seconds()
            )
            <= 2
        )
        shown = int(p.evaluate("document.querySelector('#spectrum').dataset.storedPoints"))
        assert shown == len(api["frequency_thz"])
    finally:
        server.sim_command("sim1", "SIM:CHAN:DARK 33,OFF")
    assert page.errors == []


def test_report_link_sends_the_key_when_reads_are_locked(
    browser: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Where every read needs the key, a plain link to the report is refused (a link
    cannot carry a header): with the key set, the page fetches the report with it and
    opens it in the new tab."""
    with console_server(tmp_path_factory.mktemp("locked"), devices=1, reads_locked=True) as locked:
        wait_for(lambda: _traces(locked, "sim1"), 60, "a stored trace of sim1")
        page = Page(browser, locked)
        try:
            p = page.open()
            p.evaluate(f"sessionStorage.setItem('odpm.apiKey', '{API_KEY}')")
            p = page.open("#/device/sim1")
            p.locator("#reference-panel:not([hidden])").wait_for()
            p.locator("#archive-list li[data-trace-id]").first.wait_for()
            href = p.locator("#report-link").get_attribute("href") or ""
            assert href.startswith("/api/v1/devices/sim1/report?")
            plain = httpx.get(locked.base_url + href, timeout=10)
            assert plain.status_code == 401  # what the link alone gets
            with page.context.expect_page() as popup:
                p.locator("#report-link").click()
            report = popup.value
            report.wait_for_function("document.querySelector('h1') !== null")
            assert "sim1" in report.locator("h1").inner_text()
            assert report.url.startswith("blob:")
        finally:
            page.close()
