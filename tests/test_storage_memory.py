"""Acceptance: memory stays flat through a long outage, because the backlog lives on disk."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from odpm.config import InfluxConfig
from odpm.storage import Forwarder, Journal
from tests.support.influxd import free_port
from tests.support.storage_writer import make_reading


def rss_bytes() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("VmRSS not found in /proc/self/status")


@pytest.mark.slow
def test_rss_flat_through_60s_outage(tmp_path: Path) -> None:
    # Nothing listens on this port: every write is a connection error (an outage).
    url = f"http://127.0.0.1:{free_port()}"
    rate_hz, warmup_s, outage_s = 10.0, 5.0, 60.0
    with Journal(tmp_path / "j.sqlite3") as journal:
        fwd = Forwarder(
            journal,
            InfluxConfig(url=url, batch_lines=500, timeout_s=1),
            backoff_initial_s=0.05,
            backoff_max_s=0.5,  # retry often: the point is that retrying costs no memory
            poll_interval_s=0.05,
        )
        with fwd:
            t = datetime.now(UTC)
            n = 0
            begin = time.monotonic()
            baseline = None
            while (elapsed := time.monotonic() - begin) < warmup_s + outage_s:
                journal.append(make_reading("mem", t + timedelta(seconds=n / rate_hz), n))
                n += 1
                if baseline is None and elapsed >= warmup_s:
                    baseline = rss_bytes()
                time.sleep(max(0.0, begin + n / rate_hz - time.monotonic()))
            end = rss_bytes()
            st = fwd.stats
    assert baseline is not None
    assert st.state == "backoff" and st.retries > 50 and st.forwarded_rows == 0
    assert st.backlog_rows == n >= 600
    assert end <= baseline * 1.10, f"RSS grew from {baseline} to {end} bytes"
