"""The trace archive: spectra kept in the journal file, compactly, with why they were kept.

Tables (created beside the journal's, in the same SQLite file, written through
the journal's group commit so a trace is durable exactly like a reading):

* ``trace_axes``: each distinct frequency axis once (float64, keyed by the
  SHA-256 of its bytes, as channel plans are in ``plans``);
* ``traces``: one row per kept spectrum: device, time, the scan id of its
  reading (one join away in ``scans``), the axis, RBW, the device's identity
  (``*IDN?``), the reason it was kept (``periodic``, ``alarm:<kind>:<channel>``,
  ``manual``) and the levels encoded by :mod:`odpm.storage.tracecodec`;
* ``trace_references``: named reference ("golden") traces per device, with their
  own copy of the levels, so retention never touches them.

Retention (:meth:`TraceArchive.prune`, called by the journal's maintenance in
its transaction): traces older than ``retention_days`` and, oldest first, those
over ``max_bytes`` are deleted, except the traces of an alarm that is still
active (reason ``alarm:<kind>:<channel>`` whose newest event in ``alarms`` is a
raise), so the spectrum that explains an open alarm is never lost to the cap.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import numpy.typing as npt

from odpm.storage.journal import time_to_us, us_to_time
from odpm.storage.tracecodec import decode_levels, encode_levels

if TYPE_CHECKING:
    from odpm.storage.journal import Journal

__all__ = [
    "REASON_MANUAL",
    "REASON_PERIODIC",
    "StoredTrace",
    "TraceArchive",
    "TraceInfo",
    "alarm_reason",
]

_T = TypeVar("_T")

REASON_PERIODIC = "periodic"
REASON_MANUAL = "manual"
#: Bytes a trace row costs beside its levels blob (its columns and index entry),
#: counted against ``archive.max_bytes`` so that the cap means disk, not payload.
ROW_OVERHEAD_BYTES = 120
_PRUNE_CHUNK = 2000

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS trace_axes(id INTEGER PRIMARY KEY, sha256 BLOB NOT NULL UNIQUE, "
    "points INTEGER NOT NULL, frequency_thz BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS traces(id INTEGER PRIMARY KEY AUTOINCREMENT, "
    "device TEXT NOT NULL, time_us INTEGER NOT NULL, scan_id INTEGER, "
    "axis_id INTEGER NOT NULL REFERENCES trace_axes(id), rbw_ghz REAL NOT NULL, "
    "identity TEXT, reason TEXT NOT NULL, temperature_c REAL, bytes INTEGER NOT NULL, "
    "levels BLOB NOT NULL)",
    "CREATE INDEX IF NOT EXISTS traces_device_time ON traces(device, time_us)",
    "CREATE TABLE IF NOT EXISTS trace_references(device TEXT NOT NULL, name TEXT NOT NULL, "
    "created_us INTEGER NOT NULL, time_us INTEGER NOT NULL, source TEXT NOT NULL, "
    "axis_id INTEGER NOT NULL REFERENCES trace_axes(id), rbw_ghz REAL NOT NULL, "
    "levels BLOB NOT NULL, PRIMARY KEY(device, name))",
)

#: The newest event of every alarm key, kept if it is a raise: the reasons to protect.
_ACTIVE_REASONS = (
    "SELECT device, kind, channel FROM alarms WHERE id IN "
    "(SELECT MAX(id) FROM alarms GROUP BY device, kind, channel) AND active = 1"
)
#: A trace is protected when its (device, reason) is in the JSON list bound as ?.
_UNPROTECTED = "(device || char(31) || reason) NOT IN (SELECT value FROM json_each(?))"


def alarm_reason(kind: str, channel: int | None) -> str:
    """The reason recorded for traces kept around an alarm (``-`` for device-wide ones)."""
    return f"alarm:{kind}:{'-' if channel is None else channel}"


@dataclass(frozen=True, slots=True)
class TraceInfo:
    """A stored trace without its levels (what a listing shows)."""

    id: int
    device: str
    time: datetime
    reason: str
    points: int
    rbw_ghz: float
    scan_id: int | None
    identity: str | None
    temperature_c: float | None
    bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "device": self.device,
            "time": self.time.isoformat(),
            "reason": self.reason,
            "points": self.points,
            "rbw_ghz": self.rbw_ghz,
            "scan_id": self.scan_id,
            "identity": self.identity,
            "temperature_c": self.temperature_c,
            "bytes": self.bytes,
        }


@dataclass(frozen=True, slots=True)
class StoredTrace:
    """A stored spectrum: its listing plus the axis and the levels (0.01 dB, NaN kept)."""

    info: TraceInfo
    frequency_thz: npt.NDArray[np.float64]
    power_dbm: npt.NDArray[np.float64]

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of ``GET .../traces/{id}`` (NaN -> null)."""
        power = self.power_dbm
        return {
            **self.info.to_dict(),
            "mode": "trace",  # the shape of a live /trace too (an archive holds spectra only)
            "frequency_thz": self.frequency_thz.tolist(),
            "power_dbm": [None if p != p else round(p, 2) for p in power.tolist()],
        }

    def to_csv(self) -> str:
        """The CSV ``odpm analyze`` reads (header ``frequency_thz,power_dbm``; NaN rows left out,
        since they are points below the floor with no level); ``#`` lines say what it is."""
        i = self.info
        lines = [
            f"# odpm trace {i.id} of {i.device} at {i.time.isoformat()}, reason {i.reason}",
            f"# rbw_ghz: {i.rbw_ghz!r} (odpm analyze --rbw-ghz {i.rbw_ghz!r})",
            f"# identity: {i.identity or ''}",
            "frequency_thz,power_dbm",
        ]
        keep = ~np.isnan(self.power_dbm)
        lines += [
            f"{f!r},{p:.2f}"
            for f, p in zip(
                self.frequency_thz[keep].tolist(), self.power_dbm[keep].tolist(), strict=True
            )
        ]
        return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class ReferenceTrace:
    """A named reference trace of a device."""

    device: str
    name: str
    created: datetime
    time: datetime
    source: str
    rbw_ghz: float
    frequency_thz: npt.NDArray[np.float64]
    power_dbm: npt.NDArray[np.float64]

    def summary(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "name": self.name,
            "created": self.created.isoformat(),
            "time": self.time.isoformat(),
            "source": self.source,
            "rbw_ghz": self.rbw_ghz,
            "points": int(self.frequency_thz.size),
        }


_SELECT_INFO = (
    "SELECT t.id, t.device, t.time_us, t.reason, a.points, t.rbw_ghz, t.scan_id, t.identity, "
    "t.temperature_c, t.bytes FROM traces t JOIN trace_axes a ON a.id = t.axis_id"
)


def _info(r: Any) -> TraceInfo:
    return TraceInfo(
        id=int(r[0]),
        device=r[1],
        time=us_to_time(r[2]),
        reason=r[3],
        points=int(r[4]),
        rbw_ghz=float(r[5]),
        scan_id=r[6],
        identity=r[7],
        temperature_c=r[8],
        bytes=int(r[9]),
    )


class TraceArchive:
    """Stored traces and references in ``journal``'s file (see the module docstring).

    Thread-safe: writes go through the journal's group commit, reads use the
    calling thread's read connection.
    """

    def __init__(
        self, journal: Journal, *, max_bytes: int = 1 << 30, retention_days: float = 30.0
    ) -> None:
        if max_bytes <= 0 or retention_days <= 0:
            raise ValueError("archive max_bytes and retention_days must be > 0")
        self.journal = journal
        self.max_bytes = int(max_bytes)
        self.retention_days = float(retention_days)
        self._axis_ids: dict[bytes, int] = {}
        self._axes: dict[int, npt.NDArray[np.float64]] = {}
        self._lock = threading.Lock()
        #: Counters since start (``/metrics``).
        self.stored = 0
        self.pruned = 0

        def create(conn: sqlite3.Connection) -> None:
            for stmt in _SCHEMA:
                conn.execute(stmt)

        journal.write(create)
        journal.add_maintenance(self.prune)

    # -- axes ---------------------------------------------------------------------------

    def _axis_id(self, conn: sqlite3.Connection, frequency_thz: npt.NDArray[np.float64]) -> int:
        """The id of this axis, inserting it the first time (in the caller's transaction)."""
        raw = np.ascontiguousarray(frequency_thz, dtype="<f8").tobytes()
        digest = hashlib.sha256(raw).digest()
        with self._lock:
            got = self._axis_ids.get(digest)
        if got is not None:
            return got
        conn.execute(
            "INSERT OR IGNORE INTO trace_axes(sha256, points, frequency_thz) VALUES (?,?,?)",
            (digest, len(raw) // 8, raw),
        )
        (aid,) = conn.execute("SELECT id FROM trace_axes WHERE sha256=?", (digest,)).fetchone()
        # Cached at once (this runs on the journal's one writer): if the transaction
        # rolls back, :meth:`_write` clears the cache.
        with self._lock:
            self._axis_ids[digest] = int(aid)
        return int(aid)

    def _write(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        try:
            return self.journal.write(fn)
        except BaseException:
            with self._lock:
                self._axis_ids.clear()
            raise

    def _axis(self, conn: sqlite3.Connection, axis_id: int) -> npt.NDArray[np.float64]:
        with self._lock:
            got = self._axes.get(axis_id)
        if got is None:
            sha, raw = conn.execute(
                "SELECT sha256, frequency_thz FROM trace_axes WHERE id=?", (axis_id,)
            ).fetchone()
            got = np.frombuffer(raw, dtype="<f8").astype(np.float64)
            got.flags.writeable = False
            with self._lock:
                self._axes[axis_id] = got
                self._axis_ids[bytes(sha)] = axis_id
        return got

    # -- writing --------------------------------------------------------------------------

    def store(
        self,
        *,
        device: str,
        time: datetime,
        frequency_thz: npt.ArrayLike,
        power_dbm: npt.ArrayLike,
        rbw_ghz: float,
        reason: str,
        scan_id: int | None = None,
        identity: str | None = None,
        temperature_c: float | None = None,
    ) -> int:
        """Keep one trace; returns its id once committed."""
        freq = np.asarray(frequency_thz, dtype=np.float64)
        levels = encode_levels(power_dbm)
        if freq.size != np.asarray(power_dbm).size:
            raise ValueError(f"trace has {freq.size} frequencies for {np.size(power_dbm)} levels")
        time_us = time_to_us(time)
        temp = None if temperature_c is None or temperature_c != temperature_c else temperature_c

        def write(conn: sqlite3.Connection) -> int:
            aid = self._axis_id(conn, freq)
            cur = conn.execute(
                "INSERT INTO traces(device, time_us, scan_id, axis_id, rbw_ghz, identity, reason, "
                "temperature_c, bytes, levels) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    device,
                    time_us,
                    scan_id,
                    aid,
                    float(rbw_ghz),
                    identity,
                    reason,
                    temp,
                    len(levels) + ROW_OVERHEAD_BYTES,
                    levels,
                ),
            )
            return int(cur.lastrowid or 0)

        trace_id = self._write(write)
        self.stored += 1
        return trace_id

    def set_reason(self, trace_id: int, reason: str) -> None:
        self.journal.write(
            lambda conn: conn.execute("UPDATE traces SET reason=? WHERE id=?", (reason, trace_id))
        )

    # -- reading --------------------------------------------------------------------------

    def list_traces(
        self,
        device: str,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        reason: str | None = None,
        limit: int = 1000,
    ) -> list[TraceInfo]:
        """Traces of ``device`` in [start, end), oldest first; ``reason`` matches exactly or,
        ending in ``*``, as a prefix (``alarm:*``)."""
        where = ["t.device = ?"]
        args: list[Any] = [device]
        if start is not None:
            where.append("t.time_us >= ?")
            args.append(time_to_us(start))
        if end is not None:
            where.append("t.time_us < ?")
            args.append(time_to_us(end))
        if reason:
            if reason.endswith("*"):
                where.append("substr(t.reason, 1, ?) = ?")
                args += [len(reason) - 1, reason[:-1]]
            else:
                where.append("t.reason = ?")
                args.append(reason)
        sql = f"{_SELECT_INFO} WHERE {' AND '.join(where)} ORDER BY t.time_us, t.id LIMIT ?"
        with self.journal.read() as conn:
            rows = conn.execute(sql, (*args, limit)).fetchall()
        return [_info(r) for r in rows]

    def get(self, trace_id: int, device: str | None = None) -> StoredTrace | None:
        with self.journal.read() as conn:
            row = conn.execute(
                "SELECT t.id, t.device, t.time_us, t.reason, 0, t.rbw_ghz, t.scan_id, t.identity, "
                "t.temperature_c, t.bytes, t.axis_id, t.levels FROM traces t WHERE t.id = ?",
                (trace_id,),
            ).fetchone()
            if row is None or (device is not None and row[1] != device):
                return None
            freq = self._axis(conn, row[10])
        power = decode_levels(row[11])
        info = _info((*row[:4], freq.size, *row[5:10]))
        return StoredTrace(info, freq, power)

    def latest(self, device: str) -> StoredTrace | None:
        with self.journal.read() as conn:
            row = conn.execute(
                "SELECT id FROM traces WHERE device=? ORDER BY time_us DESC, id DESC LIMIT 1",
                (device,),
            ).fetchone()
        return None if row is None else self.get(int(row[0]))

    def nearest(self, device: str, at: datetime) -> tuple[TraceInfo | None, TraceInfo | None]:
        """The stored traces just before (or at) and just after ``at``."""
        t = time_to_us(at)
        with self.journal.read() as conn:
            before = conn.execute(
                f"{_SELECT_INFO} WHERE t.device=? AND t.time_us<=? "
                "ORDER BY t.time_us DESC, t.id DESC LIMIT 1",
                (device, t),
            ).fetchone()
            after = conn.execute(
                f"{_SELECT_INFO} WHERE t.device=? AND t.time_us>? ORDER BY t.time_us, t.id LIMIT 1",
                (device, t),
            ).fetchone()
        return (None if before is None else _info(before), None if after is None else _info(after))

    def count(self, device: str | None = None) -> int:
        with self.journal.read() as conn:
            if device is None:
                return int(conn.execute("SELECT count(*) FROM traces").fetchone()[0])
            return int(
                conn.execute("SELECT count(*) FROM traces WHERE device=?", (device,)).fetchone()[0]
            )

    def used_bytes(self) -> int:
        with self.journal.read() as conn:
            return int(conn.execute("SELECT coalesce(sum(bytes), 0) FROM traces").fetchone()[0])

    # -- references -------------------------------------------------------------------------

    def put_reference(
        self,
        device: str,
        name: str,
        *,
        time: datetime,
        frequency_thz: npt.ArrayLike,
        power_dbm: npt.ArrayLike,
        rbw_ghz: float,
        source: str,
    ) -> ReferenceTrace:
        """Create or replace the reference ``name`` of ``device``."""
        freq = np.asarray(frequency_thz, dtype=np.float64)
        levels = encode_levels(power_dbm)
        now_us = time_to_us(datetime.now(UTC))

        def write(conn: sqlite3.Connection) -> None:
            aid = self._axis_id(conn, freq)
            conn.execute(
                "INSERT INTO trace_references(device, name, created_us, time_us, source, axis_id, "
                "rbw_ghz, levels) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(device, name) DO UPDATE "
                "SET created_us=excluded.created_us, time_us=excluded.time_us, "
                "source=excluded.source, axis_id=excluded.axis_id, rbw_ghz=excluded.rbw_ghz, "
                "levels=excluded.levels",
                (device, name, now_us, time_to_us(time), source, aid, float(rbw_ghz), levels),
            )

        self._write(write)
        got = self.reference(device, name)
        assert got is not None
        return got

    def reference(self, device: str, name: str) -> ReferenceTrace | None:
        with self.journal.read() as conn:
            row = conn.execute(
                "SELECT device, name, created_us, time_us, source, rbw_ghz, axis_id, levels "
                "FROM trace_references WHERE device=? AND name=?",
                (device, name),
            ).fetchone()
            if row is None:
                return None
            freq = self._axis(conn, row[6])
        return ReferenceTrace(
            device=row[0],
            name=row[1],
            created=us_to_time(row[2]),
            time=us_to_time(row[3]),
            source=row[4],
            rbw_ghz=float(row[5]),
            frequency_thz=freq,
            power_dbm=decode_levels(row[7]),
        )

    def references(self, device: str) -> list[dict[str, Any]]:
        with self.journal.read() as conn:
            rows = conn.execute(
                "SELECT r.device, r.name, r.created_us, r.time_us, r.source, r.rbw_ghz, a.points "
                "FROM trace_references r JOIN trace_axes a ON a.id = r.axis_id "
                "WHERE r.device=? ORDER BY r.name",
                (device,),
            ).fetchall()
        return [
            {
                "device": r[0],
                "name": r[1],
                "created": us_to_time(r[2]).isoformat(),
                "time": us_to_time(r[3]).isoformat(),
                "source": r[4],
                "rbw_ghz": r[5],
                "points": r[6],
            }
            for r in rows
        ]

    # -- retention (in the journal's maintenance transaction) ---------------------------------

    def prune(self, conn: sqlite3.Connection) -> int:
        """Delete traces past the age limit, then oldest first down to ``max_bytes``;
        never those of an active alarm.  Returns how many were deleted."""
        protected = json.dumps(
            [f"{d}\x1f{alarm_reason(k, c)}" for d, k, c in conn.execute(_ACTIVE_REASONS).fetchall()]
        )
        cutoff = time_to_us(datetime.now(UTC)) - int(self.retention_days * 86400e6)
        deleted = 0
        while True:
            n = conn.execute(
                "DELETE FROM traces WHERE id IN (SELECT id FROM traces WHERE time_us < ? AND "
                f"{_UNPROTECTED} ORDER BY id LIMIT ?)",
                (cutoff, protected, _PRUNE_CHUNK),
            ).rowcount
            deleted += n
            if n < _PRUNE_CHUNK:
                break
        (used,) = conn.execute("SELECT coalesce(sum(bytes), 0) FROM traces").fetchone()
        while used > self.max_bytes:
            rows = conn.execute(
                f"SELECT id, bytes FROM traces WHERE {_UNPROTECTED} ORDER BY id LIMIT ?",
                (protected, _PRUNE_CHUNK),
            ).fetchall()
            if not rows:
                break  # only protected traces left: they stay
            sizes = np.cumsum([r[1] for r in rows])
            k = int(np.searchsorted(sizes, used - self.max_bytes)) + 1
            ids = [r[0] for r in rows[:k]]
            conn.execute(
                f"DELETE FROM traces WHERE id IN ({','.join('?' * len(ids))})",
                ids,
            )
            deleted += len(ids)
            used -= int(sizes[min(k, len(rows)) - 1])
        if deleted:
            conn.execute(
                "DELETE FROM trace_axes WHERE id NOT IN (SELECT axis_id FROM traces) "
                "AND id NOT IN (SELECT axis_id FROM trace_references)"
            )
            with self._lock:
                self._axis_ids.clear()
                self._axes.clear()
            self.pruned += deleted
        return deleted
