"""What a newcomer meets first (issue 11): ``--help`` defaults, ``hash-key`` on Ctrl-D,
``/trace`` after switching to power mode."""

from __future__ import annotations

import argparse
import fcntl
import os
import re
import select
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qsl

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from odpm.cli import build_parser
from odpm.config import ApiConfig, Settings, StorageConfig, hash_api_key
from odpm.service import Service

KEY = "newcomer-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


def _options(
    parser: argparse.ArgumentParser, name: str = "odpm"
) -> Iterator[tuple[str, argparse.ArgumentParser, argparse.Action]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _options(sub, f"{name} {sub_name}")
        elif action.option_strings and not isinstance(
            action, argparse._HelpAction | argparse._VersionAction
        ):
            yield name, parser, action


def test_every_option_of_every_command_has_help_with_its_default() -> None:
    seen = 0
    for name, parser, action in _options(build_parser()):
        assert action.help, f"{name} {action.option_strings[0]} has no help text"
        if action.nargs == 0 or action.default is None:
            continue  # a flag; or no default, which the help text itself must explain
        text = " ".join(parser.format_help().split())
        option = action.option_strings[-1]
        start = text.rindex(f"{option} ")  # the options list, after the usage line
        following = text[start : start + 600]
        assert "default" in following, f"{name} {option}: no default in --help"
        seen += 1
    assert seen >= 15


def test_analyze_help_mentions_the_aq6370_format() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "odpm", "analyze", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert "AQ6370" in out and "RESLN" in out


def _controlling_tty() -> None:  # runs in the child, before exec
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def test_hash_key_on_ctrl_d_says_so_without_a_traceback() -> None:
    """On a real terminal (a pty), Ctrl-D at the key prompt printed a traceback."""
    master, slave = os.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "odpm", "config", "hash-key"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        preexec_fn=_controlling_tty,
        close_fds=True,
    )
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 30
    while b"API key:" not in seen:
        assert time.monotonic() < deadline, seen
        if select.select([master], [], [], 0.2)[0]:
            seen += os.read(master, 1024)
    os.write(master, b"\x04")  # Ctrl-D
    out = b""
    while True:
        if not select.select([master], [], [], 0.5)[0]:
            if proc.poll() is not None:
                break
            continue
        try:
            chunk = os.read(master, 1024)
        except OSError:  # the child closed its end
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    assert proc.wait(10) == 2
    text = out.decode(errors="replace")
    assert "Traceback" not in text and "no key given" in text, text


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(
        storage=StorageConfig(data_dir=tmp_path),
        api=ApiConfig(api_key_sha256=[hash_api_key(KEY)]),
    )
    service = Service.from_settings(
        settings, simulate=1, simulate_options={"interval_s": 0.3, "mode": "trace"}
    )
    with TestClient(create_app(service)) as c:
        yield c


def _wait(predicate: object, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_trace_after_switching_to_power_mode_is_a_404_with_the_reason(
    client: TestClient,
) -> None:
    url = "/api/v1/devices/sim1"
    _wait(lambda: client.get(f"{url}/trace").status_code == 200)
    body = client.get(f"{url}/trace").json()
    assert body["mode"] == "trace" and body["time"]
    r = client.put(f"{url}/acquisition", json={"mode": "power"}, headers=AUTH)
    assert r.status_code == 200
    _wait(lambda: client.get(f"{url}/latest").json()["mode"] == "power")
    r = client.get(f"{url}/trace")
    assert r.status_code == 404
    detail = r.json()["detail"]
    assert "power mode" in detail, detail
    # It names the last trace: the one read above, or one the worker finished while
    # the switch was on its way (seen under CPU load: a trace 0.3 s before the switch).
    last = re.search(r"the last trace is from (\S+?)\.\s", detail)
    assert last is not None, detail
    assert last.group(1)[:19] >= body["time"][:19], detail
    scan = client.post(f"{url}/scan", json={"mode": "trace"}, headers=AUTH)
    assert scan.status_code == 200
    # The on-demand trace is the newest scan until the next scheduled power scan.
    fresh = client.get(f"{url}/trace")
    assert fresh.status_code in (200, 404)
    if fresh.status_code == 200:
        assert fresh.json()["time"] > body["time"]


def test_readme_history_examples_work(client: TestClient) -> None:
    """Issue 11: the README's history example asked for 2024 (422: over 400 days) with a
    ``field`` parameter that does not exist.  Every history example must answer 200."""
    two_hours_ago = (datetime.now(UTC) - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    readme = readme.replace("$(date -u -d '-2 hours' +%FT%TZ)", two_hours_ago)
    urls = re.findall(r"localhost:8000(/api/v1/[^'\"\s]*/history\?[^'\"\s]*)", readme)
    assert len(urls) >= 2
    _wait(lambda: client.get("/api/v1/devices/sim1/latest").status_code == 200)
    for url in urls:
        query = dict(parse_qsl(url.split("?", 1)[1]))
        known = {"start", "end", "every", "format"}
        assert set(query) <= known, f"README names unknown parameters: {set(query) - known}"
        r = client.get(url)
        assert r.status_code == 200, (url, r.text)
