"""``python -m odpm serve`` as a real process (real uvicorn) for storage-fault tests.

Fault tests need a process they can stop with SIGTERM and whose log they can
read (to check a fault is logged once, not once per scan), plus a few readers
of what it stored: the journal (plain sqlite3) and InfluxDB (plain InfluxQL).
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.influxd import InfluxServer, free_port


class ServeProcess:
    """One ``odpm serve`` with the API on a free port; its output goes to ``log_path``."""

    def __init__(
        self,
        workdir: Path,
        args: list[str],
        env: dict[str, str] | None = None,
        wrap: list[str] | None = None,
    ) -> None:
        """``wrap``: a command prefix the serve command is appended to (``unshare ...``)."""
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"serve-{self.port}.log"
        cmd = [
            *(wrap or []),
            sys.executable,
            "-m",
            "odpm",
            "serve",
            "--port",
            str(self.port),
            *args,
        ]
        full_env = {**os.environ, "ODPM_CONFIG": "", **(env or {})}
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, env=full_env, cwd=workdir
            )
        self.http = httpx.Client(base_url=self.base, timeout=10.0)

    def get(self, path: str) -> Any:
        return self.http.get(path).json()

    def health(self) -> dict[str, Any]:
        r = self.http.get("/api/v1/health")
        body: dict[str, Any] = r.json()
        body["http"] = r.status_code
        return body

    def metric(self, name: str, **labels: str) -> float:
        """The value of one sample of ``/metrics`` (0 if absent)."""
        for fam in text_string_to_metric_families(self.http.get("/metrics").text):
            for s in fam.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    return float(s.value)
        return 0.0

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def terminate(self, timeout_s: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        finally:
            self.close()

    def close(self) -> None:
        self.http.close()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def journal_scans(journal: Path) -> int:
    """Scans in a journal.  One reached through ``/proc/<pid>/root`` (another mount
    namespace) is copied first: SQLite resolves that magic link to ``/`` here."""
    if str(journal).startswith("/proc/"):
        with tempfile.TemporaryDirectory() as tmp:
            for suffix in ("", "-wal"):
                src = Path(str(journal) + suffix)
                if src.exists():
                    shutil.copyfile(src, Path(tmp) / (journal.name + suffix))
            return journal_scans(Path(tmp) / journal.name)
    with sqlite3.connect(f"file:{journal}?mode=ro", uri=True) as conn:
        return int(conn.execute("SELECT count(*) FROM scans").fetchone()[0])


def influx_scans(server: InfluxServer, db: str) -> int:
    res = server.query('SELECT count("lit_channels") FROM "scan"', db=db)["results"][0]
    series = res.get("series", [])
    return int(series[0]["values"][0][1]) if series else 0
