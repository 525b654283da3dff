"""Credentials inside the InfluxDB URL never reach a log line, a terminal or the API."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from odpm.config import redact_url
from tests.support.influxd import InfluxServer
from tests.support.serve_process import ServeProcess, influx_scans
from tests.support.waiting import wait_for

SECRET = "s3cretPassw0rd"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"http://user:{SECRET}@127.0.0.1:8086", "http://***@127.0.0.1:8086"),
        (f"https://{SECRET}@influx.lab/x?y=1", "https://***@influx.lab/x?y=1"),
        ("http://127.0.0.1:8086", "http://127.0.0.1:8086"),
        ("", ""),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def odpm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "odpm", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "ODPM_CONFIG": ""},
    )


def test_config_check_and_errors_do_not_print_the_password(tmp_path: Path) -> None:
    cfg = tmp_path / "odpm.toml"
    cfg.write_text(f'[storage.influx]\nurl = "http://user:{SECRET}@127.0.0.1:8086"\n')
    r = odpm("config", "check", str(cfg))
    assert r.returncode == 0 and "http://***@127.0.0.1:8086" in r.stdout
    assert SECRET not in r.stdout + r.stderr
    cfg.write_text(f'[storage.influx]\nurl = "ftp://user:{SECRET}@127.0.0.1:8086"\n')
    r = odpm("config", "check", str(cfg))
    assert r.returncode == 2 and "storage.influx.url" in r.stderr
    assert SECRET not in r.stdout + r.stderr
    r = odpm("serve", "--influx-url", f"ftp://u:{SECRET}@h", "--data-dir", str(tmp_path / "d"))
    assert r.returncode == 2 and SECRET not in r.stdout + r.stderr


@pytest.mark.influx
def test_serve_log_has_no_credentials_and_no_request_lines(
    tmp_path: Path, influxd: InfluxServer
) -> None:
    db = "odpm_secret_" + os.urandom(4).hex()
    # influxd here does not check credentials; the URL still carries them.
    url = influxd.url.replace("http://", f"http://odpm:{SECRET}@")
    svc = ServeProcess(
        tmp_path,
        ["--simulate", "1", "--influx-url", url, "--data-dir", str(tmp_path / "data")],
        env={"ODPM_STORAGE__INFLUX__DATABASE": db},
    )
    try:
        wait_for(lambda: influx_scans(influxd, db) > 3, 60, "scans forwarded")
        for path in ("/api/v1/health", "/api/v1/storage", "/metrics", "/api/v1/devices"):
            assert SECRET not in svc.http.get(path).text
        assert svc.terminate() == 0
    finally:
        svc.close()
        influxd.drop_database(db)
    log = svc.log
    assert "***@127.0.0.1" in log  # the start-up line names the InfluxDB, redacted
    assert SECRET not in log
    assert "HTTP Request:" not in log  # httpx request lines only with --log-level DEBUG
