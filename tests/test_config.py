"""Configuration loading: TOML, environment overrides, and one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from odpm.config import ConfigError, Settings, hash_api_key, load_settings

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "odpm.toml"
    p.write_text(text)
    return p


def test_default_config_file_loads() -> None:
    s = load_settings(REPO / "config" / "odpm.toml")
    assert isinstance(s, Settings)
    assert s.storage.influx.dialect == "v1"
    assert s.alarms.hysteresis_db == 0.5


def test_device_section_and_plan(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        '[[devices]]\nid = "rack1"\naddress = "socket://127.0.0.1:5025"\nmode = "trace"\n'
        "interval_s = 2.5\n[devices.plan]\nspacing_ghz = 100.0\nchannels = 40\n",
    )
    s = load_settings(p)
    d = s.device("rack1")
    assert d.mode == "trace"
    assert d.interval_s == 2.5
    assert d.plan.to_plan().count == 40


def test_environment_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = write(tmp_path, '[storage.influx]\nurl = "http://127.0.0.1:1"\n[api]\nport = 8000\n')
    monkeypatch.setenv("ODPM_STORAGE__INFLUX__URL", "http://influx:8086")
    monkeypatch.setenv("ODPM_API__PORT", "9001")
    s = load_settings(p)
    assert s.storage.influx.url == "http://influx:8086"
    assert s.api.port == 9001


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[api]\nport = "eighty"\n', "api.port: Input should be a valid integer"),
        (
            '[[devices]]\nid = "a"\ndriver = "hp8164"\naddress = "/dev/ttyUSB0"\n',
            "devices[0].driver: Input should be 'odpm96', 'aq6370' or 'ms9740' (got 'hp8164')",
        ),
        ("[storage]\nretention_dayz = 3\n", "storage.retention_dayz: unknown key"),
        ('[api]\napi_key_sha256 = ["secret"]\n', "api.api_key_sha256"),
        ("[api\nport = 1\n", "not valid TOML"),
    ],
)
def test_broken_config_gives_one_line_naming_file_and_key(
    tmp_path: Path, text: str, expected: str
) -> None:
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_settings(p)
    message = str(info.value)
    assert message.startswith(str(p))
    assert expected in message
    assert "\n" not in message


def test_duplicate_device_ids_rejected(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        '[[devices]]\nid = "a"\naddress = "x"\n[[devices]]\nid = "a"\naddress = "y"\n',
    )
    with pytest.raises(ConfigError, match="used twice"):
        load_settings(p)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.toml")


def test_hash_api_key_is_sha256_hex() -> None:
    assert hash_api_key("abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


def run_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "odpm", *args],
        capture_output=True,
        text=True,
        input=stdin,
        cwd=REPO,
        timeout=60,
    )


def test_cli_config_check_accepts_default_file() -> None:
    r = run_cli("config", "check", "config/odpm.toml")
    assert r.returncode == 0, r.stderr
    assert "config/odpm.toml: OK" in r.stdout


def test_cli_config_check_bad_type_prints_one_line_and_fails(tmp_path: Path) -> None:
    p = write(tmp_path, '[[devices]]\nid = "a"\naddress = "x"\ninterval_s = "often"\n')
    r = run_cli("config", "check", str(p))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert str(p) in lines[0]
    assert "devices[0].interval_s" in lines[0]


def test_cli_config_check_unknown_driver_fails(tmp_path: Path) -> None:
    p = write(tmp_path, '[[devices]]\nid = "a"\ndriver = "nope"\naddress = "x"\n')
    r = run_cli("config", "check", str(p))
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1
    assert "devices[0].driver" in r.stderr and "'nope'" in r.stderr


def test_cli_hash_key_from_stdin() -> None:
    r = run_cli("config", "hash-key", stdin="abc\n")
    assert r.returncode == 0
    assert r.stdout.strip() == hash_api_key("abc")


def test_cli_help_and_version() -> None:
    r = run_cli("--help")
    assert r.returncode == 0
    for command in ("serve", "sim", "scan", "analyze", "config"):
        assert command in r.stdout
    for command in ("serve", "sim", "scan", "analyze", "config"):
        sub = run_cli(command, "--help")
        assert sub.returncode == 0, (command, sub.stderr)
        assert "usage: odpm" in sub.stdout
    v = run_cli("--version")
    assert v.returncode == 0 and v.stdout.startswith("odpm ")
