"""Journal write faults: classified, counted, logged once per state change.

A full disk under the journal fails every scan the same way; logging each one
(with its traceback) floods the log at the rate of acquisition and says nothing
new.  :class:`WriteFaults` keeps the journal's current fault state instead: the
first failure of a kind logs one line, every later identical failure only
counts the reading it dropped (``odpm_readings_dropped_total{reason}``), and the
first success afterwards logs one line saying writes work again and how many
readings were lost meanwhile.  Health reads :attr:`WriteFaults.current`.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from dataclasses import dataclass

log = logging.getLogger(__name__)

#: Reasons a reading is dropped, as the ``reason`` label of ``odpm_readings_dropped_total``.
DROP_REASONS = ("disk_full", "read_only", "io_error", "corrupt", "journal_error", "size_cap")


def classify(exc: BaseException) -> str:
    """The drop reason for a failed journal write (SQLite's result code, else its text)."""
    code = getattr(exc, "sqlite_errorcode", None)
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc).lower()
    if code == sqlite3.SQLITE_FULL or "disk is full" in text or name.startswith("SQLITE_FULL"):
        return "disk_full"
    if (
        code == sqlite3.SQLITE_READONLY
        or name.startswith("SQLITE_READONLY")
        or "readonly" in text
        or "read-only" in text
    ):
        return "read_only"
    if (
        code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
        or name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB"))
        or "malformed" in text
        or "not a database" in text
    ):
        return "corrupt"
    if code == sqlite3.SQLITE_IOERR or name.startswith("SQLITE_IOERR") or "disk i/o" in text:
        return "io_error"
    return "journal_error"


_EXPLAIN = {
    "disk_full": "the disk under the journal is full; free space there (writes resume by "
    "themselves) or lower storage.max_bytes",
    "read_only": "the journal is read-only; make storage.data_dir writable",
    "io_error": "the disk under the journal reports I/O errors",
    "corrupt": "restart odpm serve to move it aside and start a new one",
    "journal_error": "see the error",
}


@dataclass(frozen=True, slots=True)
class Fault:
    """The journal's current write fault."""

    reason: str
    message: str
    #: Seconds since the epoch when this state began.
    since: float
    #: Readings dropped since it began.
    dropped: int

    def describe(self) -> str:
        if self.reason == "corrupt":
            return f"journal is damaged ({self.message}); {_EXPLAIN[self.reason]}"
        return f"journal cannot be written ({self.reason}: {self.message}); {_EXPLAIN[self.reason]}"


class WriteFaults:
    """Thread-safe fault state and dropped-reading counters of one journal."""

    def __init__(self, where: str) -> None:
        self._where = where
        self._lock = threading.Lock()
        self._current: Fault | None = None
        self._dropped: dict[str, int] = dict.fromkeys(DROP_REASONS, 0)

    @property
    def current(self) -> Fault | None:
        return self._current

    def dropped(self) -> dict[str, int]:
        """Readings dropped per reason since start (a copy)."""
        with self._lock:
            return dict(self._dropped)

    def failed(self, exc: BaseException, *, reading: bool) -> str:
        """A write failed; ``reading`` when it dropped a reading.  Returns the reason."""
        reason = classify(exc)
        message = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        with self._lock:
            if reading:
                self._dropped[reason] += 1
            cur = self._current
            if cur is None or cur.reason != reason:
                self._current = Fault(reason, message, time.time(), int(reading))
                changed = True
            else:
                self._current = Fault(
                    cur.reason, cur.message, cur.since, cur.dropped + int(reading)
                )
                changed = False
        if changed:
            log.error(
                "%s: %s; readings are dropped and counted (odpm_readings_dropped_total) "
                "until it clears (logged again only when this changes)",
                self._where,
                self._current.describe() if self._current else message,
            )
        return reason

    def succeeded(self) -> None:
        """A write committed: the fault state, if any, is over.

        Except damage: some writes still succeed in a damaged file, but it stays
        damaged until a restart moves it aside, so that state is kept.
        """
        if self._current is None or self._current.reason == "corrupt":
            return
        with self._lock:
            cur, self._current = self._current, None
        if cur is not None:
            log.warning(
                "%s: journal writes succeed again after %.0f s (%s); %d reading(s) dropped "
                "meanwhile",
                self._where,
                time.time() - cur.since,
                cur.reason,
                cur.dropped,
            )

    def count_dropped(self, reason: str, n: int) -> None:
        """Readings lost another way (e.g. pruned unforwarded under ``max_bytes``)."""
        with self._lock:
            self._dropped[reason] = self._dropped.get(reason, 0) + n
