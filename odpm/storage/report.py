"""The storage report behind ``odpm storage status`` and ``GET /api/v1/storage``.

Read from the journal alone, so the command works with the service stopped or
running (SQLite WAL: readers never block the writer): what has not reached
InfluxDB yet, how old the oldest of it is, and every quarantined batch with the
message InfluxDB gave for refusing it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from odpm.storage.journal import Journal, time_to_us

#: Quarantined batches listed (newest first); the count is always complete.
MAX_LISTED = 100


@dataclass(frozen=True, slots=True)
class QuarantineEntry:
    id: int
    created: datetime
    first_scan_id: int | None
    last_scan_id: int | None
    status: int
    message: str
    line_count: int
    requeued: bool
    #: The batch's first line, to recognise what was refused.
    first_line: str


@dataclass(frozen=True, slots=True)
class StorageReport:
    journal: str
    used_bytes: int
    max_bytes: int
    backlog_rows: int
    backlog_rollups: int
    oldest_unforwarded_age_s: float | None
    quarantined_count: int
    quarantined: list[QuarantineEntry]


def storage_report(journal: Journal) -> StorageReport:
    b = journal.backlog()
    age = None
    if b.oldest_time_us is not None:
        age = max(0.0, (time_to_us(datetime.now(UTC)) - b.oldest_time_us) / 1e6)
    stats = journal.stats()
    used = stats.used_bytes
    if used == 0:  # not measured yet in this process (the CLI): the files' sizes
        used = sum(p.stat().st_size for p in (journal.path, journal.wal_path) if p.exists())
    entries = [
        QuarantineEntry(
            id=q.id,
            created=q.created,
            first_scan_id=q.first_scan_id,
            last_scan_id=q.last_scan_id,
            status=q.status,
            message=q.message,
            line_count=q.line_count,
            requeued=q.requeued,
            first_line=q.lines.split("\n", 1)[0][:300],
        )
        for q in journal.quarantined(limit=MAX_LISTED)
    ]
    return StorageReport(
        journal=str(journal.path),
        used_bytes=used,
        max_bytes=journal.max_bytes,
        backlog_rows=b.rows,
        backlog_rollups=b.rollup_rows,
        oldest_unforwarded_age_s=age,
        quarantined_count=journal.quarantined_count(),
        quarantined=entries,
    )
