"""Acceptance on real parts: a full disk and a stalled InfluxDB recover by themselves, and
health says so while they last.

* The data dir on a real 3 MB tmpfs, filled while influxd is SIGSTOPped; influxd resumes
  while the disk is still full (the forwarder's cursor update then fails: it used to kill
  the send thread), then space is given back: without a restart the journal and InfluxDB
  agree within 60 s, the dropped scans are counted, and the full disk is logged once.
* ``odpm serve --simulate 1`` on a fresh influxd (no database), influxd SIGSTOPped for
  12 s mid-run, then SIGTERM: scans in the journal == scans in InfluxDB; health is
  ``degraded`` during the stall and ``ok`` after.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from odpm.config import hash_api_key
from odpm.storage.journal import JOURNAL_FILE
from tests.support.influxd import InfluxServer
from tests.support.serve_process import ServeProcess, influx_scans, journal_scans
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.influx, pytest.mark.slow]

KEY = "faults-key"


@dataclasses.dataclass
class SmallDisk:
    """A real tmpfs for the service's data dir.

    As root it is mounted at ``where`` for everyone.  Otherwise the kernel usually
    lets an unprivileged user mount a tmpfs in a user+mount namespace of its own
    (``unshare -Urm``): the service is started inside it (:attr:`wrap`), and the
    test reaches the mount through ``/proc/<pid>/root`` (:meth:`view`).
    ``ODPM_TEST_USERNS=1`` takes that path as root too, to exercise it.
    """

    where: Path
    size: str
    wrap: list[str]
    pid: int | None = None

    def view(self, path: Path) -> Path:
        """``path`` (inside the mount) as this test process can open it."""
        if not self.wrap:
            return path
        assert self.pid is not None, "start the service first"
        return Path(f"/proc/{self.pid}/root{path}")


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str = "3m") -> Iterator[SmallDisk]:
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0 and not os.environ.get("ODPM_TEST_USERNS"):
        r = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            pytest.skip(f"the kernel refused a tmpfs mount as root: {r.stderr.strip()}")
        try:
            yield SmallDisk(where, size, [])
        finally:
            subprocess.run(["umount", "-l", str(where)], capture_output=True)
        return
    script = f'mount -t tmpfs -o size={size} tmpfs "$0" && exec "$@"'
    wrap = ["unshare", "-Urm", "sh", "-c", script, str(where)]
    probe = subprocess.run([*wrap, "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(
            "no real small disk: not root, and the kernel refused a tmpfs in a user "
            f"namespace ({probe.stderr.strip() or probe.returncode})"
        )
    yield SmallDisk(where, size, wrap)


def fill_disk(mount: Path, leave_bytes: int) -> Path:
    """A file taking all but ``leave_bytes`` of the mount's free space."""
    st = os.statvfs(mount)
    free = st.f_bavail * st.f_frsize
    filler = mount / "filler"
    with filler.open("wb") as fh:
        remaining = max(0, free - leave_bytes)
        chunk = b"\0" * (1 << 16)
        with contextlib.suppress(OSError):  # ENOSPC at the very end is fine
            while remaining > 0:
                fh.write(chunk[: min(len(chunk), remaining)])
                remaining -= len(chunk)
    return filler


@contextlib.contextmanager
def stopped(server: InfluxServer) -> Iterator[None]:
    """influxd SIGSTOPped (hung, not gone: connections open, no answers) until the block ends."""
    assert server.proc is not None
    server.proc.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        server.proc.send_signal(signal.SIGCONT)


def test_full_disk_recovers_without_restart(tmp_path: Path, own_influxd: InfluxServer) -> None:
    with small_tmpfs(tmp_path / "mnt") as disk:
        data = disk.where / "data"
        args = [
            "--simulate", "1", "--simulate-mode", "power", "--simulate-interval-s", "0.05",
            "--influx-url", own_influxd.url, "--data-dir", str(data),
        ]  # fmt: skip
        env = {
            "ODPM_STORAGE__INFLUX__TIMEOUT_S": "3",
            "ODPM_API__API_KEY_SHA256": json.dumps([hash_api_key(KEY)]),
        }
        svc = ServeProcess(tmp_path, args, env=env, wrap=disk.wrap)
        disk.pid = svc.proc.pid
        try:
            wait_for(lambda: svc.metric("odpm_forwarded_rows_total") > 20, 60, "forwarding")
            with stopped(own_influxd):
                time.sleep(1.0)  # a write is in flight and hangs
                filler = fill_disk(disk.view(disk.where), leave_bytes=32 * 1024)
                wait_for(
                    lambda: svc.metric("odpm_readings_dropped_total", reason="disk_full") >= 20,
                    60,
                    "scans dropped on the full disk",
                )
                body = svc.health()
                assert body["status"] == "degraded" and body["http"] == 200
                assert any("disk under the journal is full" in r for r in body["reasons"])
            # influxd answers again while the disk is still full: the forwarder's
            # cursor update fails now, and must be retried, not kill its thread.
            time.sleep(4.0)
            filler.unlink()
            wait_for(
                lambda: not any("journal" in r for r in svc.health()["reasons"]),
                60,
                "journal writes resumed",
            )
            dropped = svc.metric("odpm_readings_dropped_total", reason="disk_full")
            wait_for(lambda: svc.health()["status"] == "ok", 60, "health ok again")
            # Stop acquiring, then the journal and InfluxDB must agree, without a restart.
            r = svc.http.put(
                "/api/v1/devices/sim1/acquisition",
                json={"running": False},
                headers={"Authorization": f"Bearer {KEY}"},
            )
            assert r.status_code == 200, r.text
            wait_for(lambda: svc.get("/api/v1/storage")["backlog_rows"] == 0, 60, "caught up")
            stored = journal_scans(disk.view(data / JOURNAL_FILE))
            assert stored > 0 and dropped >= 20
            assert influx_scans(own_influxd, "odpm") == stored
            assert svc.terminate() == 0
        finally:
            svc.close()
        log = svc.log
        assert "Traceback" not in log, log[-5000:]
        # Once when it began (and once when it ended), not once per dropped scan.
        assert log.count("disk under the journal is full") <= 2, log[-3000:]
        assert log.count("journal writes succeed again") >= 1


def test_e2e_influxd_stall_health_degraded_then_ok(
    tmp_path: Path, own_influxd: InfluxServer
) -> None:
    assert "odpm" not in str(own_influxd.query("SHOW DATABASES"))  # a fresh influxd
    data = tmp_path / "data"
    svc = ServeProcess(
        tmp_path,
        ["--simulate", "1", "--influx-url", own_influxd.url, "--data-dir", str(data)],
        env={"ODPM_STORAGE__INFLUX__MAX_LAG_S": "4", "ODPM_STORAGE__INFLUX__TIMEOUT_S": "5"},
    )
    try:
        wait_for(lambda: svc.health()["status"] == "ok", 60, "health ok")
        wait_for(lambda: influx_scans(own_influxd, "odpm") > 3, 60, "scans in InfluxDB")
        statuses: list[str] = []
        with stopped(own_influxd):
            deadline = time.monotonic() + 12.0
            while time.monotonic() < deadline:
                statuses.append(svc.health()["status"])
                time.sleep(0.5)
            body = svc.health()
        assert "degraded" in statuses, (statuses, svc.log[-3000:])
        assert body["http"] == 200
        assert any("not yet in InfluxDB" in r for r in body["reasons"]), body["reasons"]
        wait_for(lambda: svc.health()["status"] == "ok", 60, "health ok after the stall")
        assert svc.terminate() == 0
    finally:
        svc.close()
    stored = journal_scans(data / JOURNAL_FILE)
    assert stored > 10
    assert influx_scans(own_influxd, "odpm") == stored, svc.log[-3000:]
    assert "Traceback" not in svc.log
