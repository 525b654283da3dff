"""The forwarder's threads survive any exception: logged once, backed off, retried.

Small fakes on purpose (a writer with a bug, a journal read that fails for a while);
the full-disk case on a real tmpfs is in test_storage_faults.py.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from odpm.config import InfluxConfig
from odpm.storage import Forwarder, Journal
from tests.support.storage_writer import make_reading

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


class FlakyWriter:
    """Raises ``failures`` unexpected errors (not WriteErrors), then accepts everything."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.bodies: list[str] = []

    def write(self, body: str) -> None:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("a bug in a writer")
        self.bodies.append(body)

    def close(self) -> None:
        pass


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal(tmp_path / "j.sqlite3")
    for i in range(5):
        j.append(make_reading("r", T0 + timedelta(seconds=i), i))
    yield j
    j.close()


def forwarder(journal: Journal, writer: FlakyWriter) -> Forwarder:
    cfg = InfluxConfig(url="http://127.0.0.1:9", batch_lines=81, create_database=False)
    return Forwarder(
        journal, cfg, writer=writer, backoff_initial_s=0.02, backoff_max_s=0.1, poll_interval_s=0.02
    )


def test_a_writer_bug_is_retried_not_fatal(journal: Journal) -> None:
    writer = FlakyWriter(failures=4)
    with forwarder(journal, writer) as fwd:
        assert fwd.wait_drained(20)
        st = fwd.stats
    assert len(writer.bodies) == 5 and st.forwarded_rows == 5 and st.retries == 4
    assert journal.quarantined_count() == 0


def test_encoder_survives_journal_read_errors(
    journal: Journal, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = journal.read_scans
    failures = {"left": 5}

    def flaky(after_id: int, limit: int) -> Any:
        if failures["left"]:
            failures["left"] -= 1
            raise OSError("disk I/O error (for a while)")
        return real(after_id, limit)

    monkeypatch.setattr(journal, "read_scans", flaky)
    writer = FlakyWriter(failures=0)
    with caplog.at_level(logging.ERROR), forwarder(journal, writer) as fwd:
        assert fwd.wait_drained(20)
    assert failures["left"] == 0 and len(writer.bodies) == 5
    logged = [r for r in caplog.records if "encoder failed" in r.getMessage()]
    assert len(logged) == 1  # once per distinct failure, not once per retry
