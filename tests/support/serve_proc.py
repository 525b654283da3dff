"""``python -m odpm serve --simulate N`` as a real process (real uvicorn), for API tests.

The server is configured only through ``ODPM_`` environment variables (no config file), on a
free loopback port, with its journal in a temporary directory; :func:`served` yields once the
first reading of ``sim1`` is available and stops the process afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from odpm.config import hash_api_key
from tests.support.influxd import free_port


@dataclass(frozen=True)
class Served:
    """A running server: where it listens, its process and its log."""

    url: str
    host: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    key: str

    @property
    def auth(self) -> dict[str, str]:
        """Headers that carry the server's API key."""
        return {"Authorization": f"Bearer {self.key}"}

    def rss_bytes(self, field: str = "VmRSS") -> int:
        """Resident memory of the server process (``VmRSS``, or ``VmHWM`` for the peak)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise AssertionError(f"{field} not in /proc/{self.proc.pid}/status")


@contextlib.contextmanager
def served(
    tmp: Path,
    *,
    key: str = "test-key",
    env: Mapping[str, str] = {},
    args: tuple[str, ...] = (),
    ready_s: float = 30.0,
) -> Iterator[Served]:
    """Run ``odpm serve --simulate 1`` with ``key`` accepted and ``env`` added."""
    port = free_port()
    environ = {
        **os.environ,
        "ODPM_CONFIG": "",
        "ODPM_API__API_KEY_SHA256": json.dumps([hash_api_key(key)]),
        "ODPM_STORAGE__INFLUX__URL": "",
        **env,
    }
    cmd = [sys.executable, "-m", "odpm", "--log-level", "WARNING", "serve", "--simulate", "1",
           "--port", str(port), "--data-dir", str(tmp / "data"), *args]  # fmt: skip
    log_path = tmp / "serve.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=environ, cwd=tmp)
    url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {key}"}
    try:
        deadline = time.monotonic() + ready_s
        while True:
            try:
                r = httpx.get(f"{url}/api/v1/devices/sim1/latest", headers=headers, timeout=2)
                if r.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "server did not come up: " + log_path.read_text()
            time.sleep(0.2)
        yield Served(url, "127.0.0.1", port, proc, log_path, key)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()
