"""`odpm sim --model aq6370|ms9740` as real processes and `odpm scan --driver ...` against them;
the OSA device config (trace by default, power refused, the password kept secret)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from odpm.cli import main
from odpm.config import ConfigError, DeviceConfig, load_settings


def _emulator(model: str) -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "odpm", "sim", "--model", model, "--tcp", "127.0.0.1:0"],
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
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()


@pytest.fixture
def aq_process() -> Iterator[str]:
    yield from _emulator("aq6370")


@pytest.fixture
def ms_process() -> Iterator[str]:
    yield from _emulator("ms9740")


def test_scan_aq6370_through_the_pipeline(
    aq_process: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ODPM_OSA_PASSWORD", "whatever")
    assert main(["scan", aq_process, "--driver", "aq6370", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["mode"] == "trace" and len(out["channels"]) == 80
    assert sum(c["osnr_db"] is not None for c in out["channels"]) >= 20
    assert out["temperature_c"] is None


def test_scan_ms9740_ascii_table(ms_process: str, capsys: pytest.CaptureFixture[str]) -> None:
    port = ms_process.rsplit(":", 1)[1]
    argv = ["scan", f"TCPIP::127.0.0.1::{port}::SOCKET", "--driver", "ms9740"]
    assert main([*argv, "--trace-format", "ascii", "--timeout-s", "10"]) == 0
    out = capsys.readouterr().out
    assert "OSNR" in out and len(out.splitlines()) > 80


def test_scan_osa_power_mode_is_refused_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scan", "socket://127.0.0.1:1", "--driver", "aq6370", "--mode", "power"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "no power mode" in err and "photodiode" in err


def test_sim_osa_is_tcp_only(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "--model", "ms9740", "--pty"]) == 2
    assert "TCP only" in capsys.readouterr().err


def test_osa_device_defaults_to_trace_and_refuses_power() -> None:
    d = DeviceConfig.model_validate({"id": "a", "driver": "aq6370", "address": "GPIB0::1::INSTR"})
    assert d.mode == "trace"
    with pytest.raises(ValueError, match="bench OSA: it has no power mode"):
        DeviceConfig.model_validate(
            {"id": "a", "driver": "ms9740", "address": "x", "mode": "power"}
        )


def test_osa_password_stays_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    d = DeviceConfig.model_validate(
        {"id": "a", "driver": "aq6370", "address": "socket://h:10001", "password": "hunter2"}
    )
    assert "hunter2" not in repr(d) and "hunter2" not in d.model_dump_json()
    assert d.resolved_password() == "hunter2"
    monkeypatch.setenv("LAB_OSA_PW", "from-env")
    e = d.model_copy(update={"password_env": "LAB_OSA_PW"})
    assert e.resolved_password() == "from-env"


def test_osa_power_mode_in_a_config_file_is_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "odpm.toml"
    cfg.write_text('[[devices]]\nid = "o"\ndriver = "aq6370"\naddress = "x"\nmode = "stream"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(cfg)
    assert len(str(info.value).splitlines()) == 1 and "no stream mode" in str(info.value)
