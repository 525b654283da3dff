"""`odpm sim` as a real process and `odpm scan` against it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from odpm.cli import main


@pytest.fixture
def sim_process() -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "odpm", "sim", "--tcp", "127.0.0.1:0", "--seed", "5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        address = proc.stdout.readline().strip()
        assert address.startswith("socket://127.0.0.1:"), address
        yield address
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        if proc.stdout:
            proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()


def test_scan_json_through_the_pipeline(
    sim_process: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["scan", sim_process, "--mode", "trace", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["channels"]) == 80
    first = out["channels"][0]
    assert {"channel", "present", "power_dbm", "osnr_db"} <= first.keys()
    assert out["lit_channels"] == 80


def test_scan_visa_table(sim_process: str, capsys: pytest.CaptureFixture[str]) -> None:
    port = sim_process.rsplit(":", 1)[1]
    assert main(["scan", f"TCPIP::127.0.0.1::{port}::SOCKET", "--format", "table"]) == 0
    out = capsys.readouterr().out
    assert "OSNR" in out and len(out.splitlines()) > 80


def test_scan_unreachable_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scan", "socket://127.0.0.1:1", "--timeout-s", "0.5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("odpm scan: error:") and len(err.splitlines()) == 1


def test_sim_rejects_a_bad_tcp_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "--tcp", "nonsense"]) == 2
    assert "HOST:PORT" in capsys.readouterr().err
