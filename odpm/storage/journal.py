"""The durable local journal: every reading, committed before it counts as stored.

SQLite (standard library) in WAL mode.  One row per scan: per-scan scalars as
columns, channel arrays as float32 blobs (NaN preserved), the channel plan
(numbers and frequencies) once in ``plans`` and referenced by id; alarm events
in their own table; 1-minute rollups in ``rollups``; batches InfluxDB refused
in ``quarantine``; the forwarder's cursors in ``meta``.

Group commit (leader/follower): :meth:`Journal.append` encodes the row on the
caller's thread and queues it; if no commit is in progress the caller becomes
the leader and commits everything queued (one ``executemany``, one COMMIT) on
its own thread, while callers arriving meanwhile wait on one shared condition
and go into the next group.  A lone appender thus costs what a plain
one-commit-per-scan loop costs (no hand-off to another thread: with one
appender every commit can only carry one row, since ``append`` returns after
its commit), and concurrent appenders share commits, which under
``synchronous=FULL`` shares the fsync (``bench/storage.py`` measures both).

Durability: ``PRAGMA synchronous=NORMAL`` in WAL mode.  A committed transaction
is in the WAL file (the OS page cache) before ``append`` returns, so it survives
a crash or ``kill -9`` of the process; only a power loss or kernel crash can
lose the last commits before a checkpoint.  ``synchronous="FULL"`` fsyncs
every commit (power-loss durable) at roughly the cost of one fsync per batch.

Values are quantised to :data:`VALUE_DECIMALS` decimals before storing (the
instrument's accuracy is +/-0.5 dB; 1e-4 is far below it) and float32 holds that
exactly enough to give the same decimal back: the journal, the line protocol
and InfluxDB then all carry the identical value.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

import numpy as np
import numpy.typing as npt

from odpm.grid import DEFAULT_SPACING_GHZ
from odpm.models import AlarmEvent, AlarmKind, ClearReason, Mode, Reading
from odpm.storage.datadir import DataDirLock, JournalOpenError, check_journal, unwritable
from odpm.storage.faults import WriteFaults

if TYPE_CHECKING:
    from odpm.config import StorageConfig

log = logging.getLogger(__name__)

#: Decimal places kept for every per-channel value (dB, dBm, GHz).
VALUE_DECIMALS = 4
#: File name of the journal inside ``storage.data_dir``.
JOURNAL_FILE = "journal.sqlite3"
#: Rollup period (``channel_1m``).
ROLLUP_PERIOD_US = 60_000_000
#: The per-channel arrays stored as float32 blobs, in this order.
CHANNEL_VALUE_COLUMNS = ("power_dbm", "signal_power_dbm", "osnr_db", "offset_ghz")
ROLLUP_VALUE_COLUMNS = (
    "power_dbm_mean",
    "power_dbm_min",
    "power_dbm_max",
    "osnr_db_mean",
    "osnr_db_min",
    "osnr_db_max",
)

#: Bounds of the WAL (bytes) before SQLite checkpoints it and truncates it back.
#: The bound is 1/16 of the free space at open within these limits, and at most
#: max_bytes/8 (so that ``max_bytes`` holds for database + WAL together): SQLite's
#: default (1000 pages, ~4 MB) alone fills a small disk, while on a large one a
#: smaller WAL only costs throughput (more checkpoints, each with two fsyncs:
#: 1 MB measured ~25% slower appends than 4 MB).
WAL_LIMIT_BYTES = 4 << 20
WAL_LIMIT_MIN_BYTES = 256 << 10


def wal_limit_bytes(max_bytes: int, free_bytes: int) -> int:
    """The WAL bound for a journal capped at ``max_bytes`` on a disk with ``free_bytes``."""
    return min(max_bytes // 8, max(WAL_LIMIT_MIN_BYTES, min(WAL_LIMIT_BYTES, free_bytes // 16)))


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_GROUP = 2000
_PRUNE_CHUNK = 5000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS plans(
    id INTEGER PRIMARY KEY, channel BLOB NOT NULL, frequency_thz BLOB NOT NULL,
    width_ghz BLOB NOT NULL DEFAULT x'',
    UNIQUE(channel, frequency_thz, width_ghz));
CREATE TABLE IF NOT EXISTS scans(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device TEXT NOT NULL, time_us INTEGER NOT NULL, mode TEXT NOT NULL,
    plan_id INTEGER NOT NULL REFERENCES plans(id),
    temperature_c REAL, total_power_dbm REAL, lit_channels INTEGER NOT NULL,
    tilt_db REAL, flatness_db REAL, min_osnr_db REAL,
    present BLOB NOT NULL, quality BLOB NOT NULL,
    power_dbm BLOB NOT NULL, signal_power_dbm BLOB NOT NULL,
    osnr_db BLOB NOT NULL, offset_ghz BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS scans_device_time ON scans(device, time_us);
CREATE TABLE IF NOT EXISTS alarms(
    id INTEGER PRIMARY KEY AUTOINCREMENT, scan_id INTEGER NOT NULL,
    device TEXT NOT NULL, time_us INTEGER NOT NULL, kind TEXT NOT NULL,
    channel INTEGER, active INTEGER NOT NULL, value REAL, threshold REAL,
    reason TEXT);
CREATE INDEX IF NOT EXISTS alarms_scan ON alarms(scan_id);
CREATE INDEX IF NOT EXISTS alarms_time ON alarms(time_us);
CREATE TABLE IF NOT EXISTS devices(
    device TEXT PRIMARY KEY, last_scan_id INTEGER NOT NULL, last_time_us INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS rollups(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device TEXT NOT NULL, minute_us INTEGER NOT NULL, plan_id INTEGER NOT NULL,
    samples INTEGER NOT NULL,
    power_dbm_mean BLOB NOT NULL, power_dbm_min BLOB NOT NULL, power_dbm_max BLOB NOT NULL,
    osnr_db_mean BLOB NOT NULL, osnr_db_min BLOB NOT NULL, osnr_db_max BLOB NOT NULL,
    UNIQUE(device, minute_us, plan_id));
CREATE TABLE IF NOT EXISTS rollup_state(device TEXT PRIMARY KEY, until_us INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS quarantine(
    id INTEGER PRIMARY KEY AUTOINCREMENT, created_us INTEGER NOT NULL,
    first_scan_id INTEGER, last_scan_id INTEGER, status INTEGER NOT NULL,
    message TEXT NOT NULL, line_count INTEGER NOT NULL, lines TEXT NOT NULL);
"""

_T = TypeVar("_T")


class JournalClosedError(RuntimeError):
    """``append`` after :meth:`Journal.close`."""


def time_to_us(t: datetime) -> int:
    """Microseconds since the Unix epoch, exactly (no float rounding)."""
    if t.tzinfo is None:
        raise ValueError(f"reading time {t.isoformat()} must be timezone-aware (UTC)")
    return (t - _EPOCH) // timedelta(microseconds=1)


def us_to_time(time_us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=int(time_us))


def quantise(values: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """The stored form of per-channel values: rounded to VALUE_DECIMALS, float32."""
    return np.round(np.asarray(values, dtype=np.float64), VALUE_DECIMALS).astype(np.float32)


def dequantise(blob: bytes, rows: int = 1) -> npt.NDArray[np.float64]:
    """Back to float64 with the exact decimal that was stored (see :func:`quantise`)."""
    arr = np.frombuffer(blob, dtype=np.float32).astype(np.float64)
    out = np.round(arr, VALUE_DECIMALS)
    return out if rows == 1 else out.reshape(rows, -1)


def _nan_if_none(v: float | None) -> float:
    return math.nan if v is None else float(v)


def _none_if_nan(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


@dataclass(frozen=True, slots=True)
class StoredScan:
    """A journal row decoded: what the forwarder encodes and ``latest`` rebuilds from."""

    id: int
    device: str
    time_us: int
    mode: str
    channel: npt.NDArray[np.int64]
    frequency_thz: npt.NDArray[np.float64]
    present: npt.NDArray[np.bool_]
    quality: npt.NDArray[np.uint8]
    #: (4, channels) in :data:`CHANNEL_VALUE_COLUMNS` order, NaN where missing.
    values: npt.NDArray[np.float64]
    total_power_dbm: float
    lit_channels: int
    tilt_db: float
    flatness_db: float
    min_osnr_db: float
    temperature_c: float | None
    alarms: tuple[AlarmEvent, ...]
    #: Per channel :class:`~odpm.models.OsnrMethod` and one-sigma OSNR uncertainty
    #: (dB); None for scans stored before these columns existed, and for port scans.
    osnr_method: npt.NDArray[np.uint8] | None = None
    osnr_uncertainty_db: npt.NDArray[np.float64] | None = None
    #: Each channel's slot width (GHz); for plans stored before widths were, the
    #: plan's spacing.
    width_ghz: npt.NDArray[np.float64] | None = None

    def to_reading(self) -> Reading:
        return Reading(
            device_id=self.device,
            time=us_to_time(self.time_us),
            mode=cast(Mode, self.mode),
            channel=self.channel,
            frequency_thz=self.frequency_thz,
            present=self.present,
            power_dbm=self.values[0],
            signal_power_dbm=self.values[1],
            osnr_db=self.values[2],
            offset_ghz=self.values[3],
            quality=self.quality,
            total_power_dbm=self.total_power_dbm,
            lit_channels=self.lit_channels,
            tilt_db=self.tilt_db,
            flatness_db=self.flatness_db,
            min_osnr_db=self.min_osnr_db,
            temperature_c=self.temperature_c,
            alarms=self.alarms,
            osnr_method=self.osnr_method,
            osnr_uncertainty_db=self.osnr_uncertainty_db,
            width_ghz=self.width_ghz,
        )


@dataclass(frozen=True, slots=True)
class StoredRollup:
    """One device-minute of ``channel_1m``: (6, channels) in ROLLUP_VALUE_COLUMNS order."""

    id: int
    device: str
    minute_us: int
    channel: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]
    samples: int


@dataclass(frozen=True, slots=True)
class Backlog:
    """What has not reached InfluxDB yet."""

    rows: int
    oldest_time_us: int | None
    rollup_rows: int
    scan_cursor: int
    rollup_cursor: int


@dataclass(frozen=True, slots=True)
class JournalStats:
    """Counters for health and metrics (a snapshot)."""

    appended: int
    commits: int
    pruned_rows: int
    dropped_unforwarded: int
    used_bytes: int
    max_bytes: int


@dataclass(frozen=True, slots=True)
class QuarantinedBatch:
    id: int
    created: datetime
    first_scan_id: int | None
    last_scan_id: int | None
    status: int
    message: str
    line_count: int
    lines: str
    #: A person asked for it to be sent again (``odpm storage requeue``).
    requeued: bool = False


class _Write:
    """One queued write.  Either an encoded scan (``row``) or a function of the connection.

    ``done`` is a plain flag read under the journal's condition variable: waiting
    callers share that one condition instead of owning an Event each.
    """

    __slots__ = ("alarms", "done", "error", "fn", "plan_key", "result", "row")

    def __init__(
        self,
        fn: Callable[[sqlite3.Connection], Any] | None = None,
        row: tuple[Any, ...] = (),
        plan_key: tuple[bytes, bytes, bytes] = (b"", b"", b""),
        alarms: list[tuple[Any, ...]] | None = None,
    ) -> None:
        self.fn = fn
        self.row = row
        self.plan_key = plan_key
        self.alarms = alarms
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None


_INSERT_SCAN = (
    "INSERT INTO scans(device, time_us, mode, temperature_c, total_power_dbm, lit_channels, "
    "tilt_db, flatness_db, min_osnr_db, present, quality, power_dbm, signal_power_dbm, "
    "osnr_db, offset_ghz, osnr_method, osnr_uncertainty_db, plan_id) "
    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
_INSERT_ALARM = (
    "INSERT INTO alarms(scan_id, device, time_us, kind, channel, active, value, threshold, "
    "reason) VALUES (?,?,?,?,?,?,?,?,?)"
)
#: ``alarms.scan_id`` of an event that belongs to no scan (``device_lost``, raised
#: precisely because no scan arrives); the forwarder ships these by their own cursor.
NO_SCAN_ID = 0


_UPSERT_DEVICE = (
    "INSERT INTO devices(device, last_scan_id, last_time_us) VALUES (?,?,?) "
    "ON CONFLICT(device) DO UPDATE SET last_scan_id=excluded.last_scan_id, "
    "last_time_us=excluded.last_time_us "
    "WHERE excluded.last_time_us >= devices.last_time_us"
)


class Journal:
    """SQLite journal with leader/follower group commit.  See the module docstring.

    ``forwarding``: True when an InfluxDB forwarder consumes the journal; then
    retention keeps rows it has not shipped (unless ``max_bytes`` forces it).
    With no forwarder, "unforwarded" means nothing and must not block retention.
    """

    def __init__(
        self,
        path: Path,
        *,
        retention_days: float = 7.0,
        max_bytes: int = 2_000_000_000,
        forwarding: bool = True,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
        maintenance_interval_s: float = 5.0,
        rollup_idle_s: float = 90.0,
        lock: bool = False,
        check: bool = True,
    ) -> None:
        if retention_days <= 0:
            raise ValueError(f"retention_days must be > 0, got {retention_days}")
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be > 0, got {max_bytes}")
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be NORMAL or FULL, got {synchronous!r}")
        self.path = Path(path)
        #: ``lock``: hold the data dir (one writing service per dir, see datadir.py).
        self._dir_lock = DataDirLock(self.path.parent) if lock else None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise unwritable(self.path.parent, exc) from None
        if self._dir_lock is not None:
            self._dir_lock.acquire()
        try:
            #: Where a damaged journal found at start was moved (health reports it).
            self.moved_aside: Path | None = check_journal(self.path) if check else None
            self._open(retention_days, max_bytes, forwarding, synchronous)
        except BaseException:
            if self._dir_lock is not None:
                self._dir_lock.release()
            raise
        self._maintenance_interval_s = maintenance_interval_s
        #: Retention of stores sharing this file (the trace archive), run in the
        #: maintenance transaction before the journal's own size cap.
        self._maintenance_hooks: list[Callable[[sqlite3.Connection], object]] = []
        self._rollup_idle_s = rollup_idle_s
        self._stop_maintenance = threading.Event()
        self._thread = threading.Thread(
            target=self._maintenance_loop, name="odpm-journal-maintenance", daemon=True
        )
        self._thread.start()

    def _open(
        self, retention_days: float, max_bytes: int, forwarding: bool, synchronous: str
    ) -> None:
        self.retention_days = float(retention_days)
        self.max_bytes = int(max_bytes)
        #: The WAL's bound; the database itself is pruned to max_bytes minus this.
        try:
            st = os.statvfs(self.path.parent)
            free = st.f_bavail * st.f_frsize
        except OSError:
            free = WAL_LIMIT_BYTES * 16
        self.wal_limit_bytes = wal_limit_bytes(self.max_bytes, free)
        self.forwarding = forwarding
        self._synchronous = synchronous
        #: Write faults (disk full ...): state for health, drop counters for metrics.
        self.faults = WriteFaults(f"journal {self.path}")
        #: Guards the write queue and the leader flag; waiting appenders sleep on it.
        self._cv = threading.Condition(threading.Lock())
        self._pending: list[_Write] = []
        self._leading = False
        self._closed = False
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._local = threading.local()
        self._plan_ids: dict[tuple[bytes, bytes, bytes], int] = {}
        self._plans: dict[int, _StoredPlan] = {}
        self._plans_lock = threading.Lock()
        self._last_append_mono: dict[str, float] = {}
        self._started_mono = time.monotonic()
        self._appended = 0
        self._commits = 0
        self._pruned = 0
        self._dropped = 0
        self._used_bytes = 0
        try:
            conn = self._connect()
            conn.executescript(_SCHEMA)
            _migrate(conn)
        except sqlite3.Error as exc:
            raise JournalOpenError(
                f"cannot open the journal {self.path}: {exc}; make {self.path.parent} "
                "writable or choose another storage.data_dir (--data-dir)"
            ) from None
        #: Used only by the current leader (see :meth:`_run`), never concurrently.
        self._writer_conn = conn
        #: For WAL checkpoints after maintenance (see :meth:`_checkpoint`).
        self._ckpt_conn: sqlite3.Connection | None = None

    @classmethod
    def from_config(cls, config: StorageConfig, **kwargs: Any) -> Journal:
        """The service's journal: ``data_dir/journal.sqlite3``; forwarding iff influx is set."""
        return cls(
            Path(config.data_dir) / JOURNAL_FILE,
            retention_days=config.retention_days,
            max_bytes=config.max_bytes,
            forwarding=config.influx.enabled,
            **kwargs,
        )

    @property
    def wal_path(self) -> Path:
        return self.path.with_name(self.path.name + "-wal")

    # -- connections ------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        conn.execute("PRAGMA busy_timeout=30000")
        # Bound the WAL: checkpoint after this many pages, truncate it back after.
        page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
        conn.execute(f"PRAGMA wal_autocheckpoint={max(16, self.wal_limit_bytes // page_size)}")
        conn.execute(f"PRAGMA journal_size_limit={self.wal_limit_bytes}")
        return conn

    def _reader(self) -> sqlite3.Connection:
        """This thread's read connection (SQLite connections are not shared across threads)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise JournalClosedError(f"journal {self.path} is closed")
            conn = self._connect()
            conn.execute("PRAGMA query_only=1")
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: several SELECTs see one consistent state."""
        conn = self._reader()
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    # -- hooks for stores sharing this file (odpm.storage.traces) ------------------------

    def write(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``fn`` in the next group commit (the journal's one write path)."""
        return self._submit(fn)

    def read(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """A read transaction on this thread's read connection."""
        return self._snapshot()

    def add_maintenance(self, hook: Callable[[sqlite3.Connection], object]) -> None:
        """Run ``hook(conn)`` in every maintenance transaction, before the size cap."""
        self._maintenance_hooks.append(hook)

    # -- writing ----------------------------------------------------------------------

    def _submit(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``fn`` in the next group's transaction; return once it has committed."""
        return cast(_T, self._run(_Write(fn=fn)))

    def append(self, reading: Reading) -> int:
        """Store ``reading``; returns its scan id once the row is committed.

        Thread-safe.  The row is encoded here, on the caller's thread, so the
        commit itself is one ``executemany`` for every row waiting at that moment.
        """
        row, plan_key, alarms = _encode(reading)
        self._last_append_mono[reading.device_id] = time.monotonic()
        return cast(int, self._run(_Write(row=row, plan_key=plan_key, alarms=alarms)))

    def append_alarms(self, events: Sequence[AlarmEvent]) -> None:
        """Store alarm events that belong to no scan (``device_lost``); returns once
        committed.  The forwarder ships them by their own cursor (``fwd_alarm``)."""
        rows = [(NO_SCAN_ID, *_encode_alarm(a)) for a in events]
        if rows:
            self._submit(lambda conn: conn.executemany(_INSERT_ALARM, rows))

    def read_standalone_alarms(self, after_id: int, limit: int) -> list[tuple[int, AlarmEvent]]:
        """Scan-less alarm events with id > ``after_id``, oldest first, with their ids."""
        rows = (
            self._reader()
            .execute(
                _SELECT_ALARM.replace(" FROM alarms", ", id FROM alarms")
                + " WHERE scan_id = ? AND id > ? ORDER BY id LIMIT ?",
                (NO_SCAN_ID, after_id, limit),
            )
            .fetchall()
        )
        return [(int(r[-1]), _decode_alarm(r)) for r in rows]

    def alarm_cursor(self) -> int:
        """The last scan-less alarm event id the forwarder has shipped."""
        row = self._reader().execute("SELECT value FROM meta WHERE key = 'fwd_alarm'").fetchone()
        return 0 if row is None else int(row[0])

    def set_alarm_cursor(self, alarm_id: int) -> None:
        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO meta(key, value) VALUES ('fwd_alarm', ?) ON CONFLICT(key) "
                "DO UPDATE SET value=max(value, excluded.value)",
                (int(alarm_id),),
            )

        self._submit(write)

    def _run(self, item: _Write) -> Any:
        """Leader/follower group commit: queue ``item``, then commit it or wait for it.

        If no commit is in progress the caller becomes the leader and commits
        everything queued (its own item included) on its own thread; callers
        arriving meanwhile queue up and the next leader commits them together.
        A lone appender therefore pays no thread hand-off at all (the cost of
        the naive one-commit-per-scan loop), while concurrent appenders share
        commits, which is what saves the fsync under ``synchronous=FULL``.
        """
        with self._cv:
            if self._closed:
                raise JournalClosedError(f"journal {self.path} is closed")
            self._pending.append(item)
            while not item.done:
                if not self._leading:
                    self._leading = True
                    batch = self._pending[:_MAX_GROUP]
                    del self._pending[:_MAX_GROUP]
                    break
                self._cv.wait()
            else:
                return _outcome(item)
        try:
            self._commit_group(self._writer_conn, batch)
        finally:
            with self._cv:
                self._leading = False
                self._cv.notify_all()
        if not item.done:  # only if _commit_group itself broke; never leave a caller hanging
            raise RuntimeError(f"journal {self.path}: write was not committed")
        return _outcome(item)

    def _plan_id(self, conn: sqlite3.Connection, key: tuple[bytes, bytes, bytes]) -> int:
        pid = self._plan_ids.get(key)
        if pid is None:
            conn.execute(
                "INSERT OR IGNORE INTO plans(channel, frequency_thz, width_ghz) VALUES (?,?,?)",
                key,
            )
            got = conn.execute(
                "SELECT id FROM plans WHERE channel=? AND frequency_thz=? AND width_ghz=?", key
            ).fetchone()
            pid = int(got[0])
            self._plan_ids[key] = pid
        return pid

    def _maintenance_loop(self) -> None:
        """Periodic rollups and retention, committed like any other write."""
        while not self._stop_maintenance.wait(self._maintenance_interval_s):
            try:
                self._submit(self._maintain)
                self._checkpoint()
            except JournalClosedError:
                return
            except Exception:  # already logged by _maintain; try again next period
                continue

    def _commit_group(self, conn: sqlite3.Connection, batch: list[_Write]) -> None:
        """One transaction for the whole group; if it fails, each item alone.

        Rows are validated in the caller's thread, so a failing group is rare
        (disk full, I/O error); retrying item by item keeps one bad write from
        failing its neighbours and gives each caller its own error.
        """
        try:
            conn.execute("BEGIN IMMEDIATE")
            results = self._execute_group(conn, batch)
            conn.execute("COMMIT")
        except Exception:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            # The plan cache may name rows that were rolled back.
            self._plan_ids.clear()
            if len(batch) > 1:
                for w in batch:
                    self._commit_group(conn, [w])
                return
            exc = sys.exc_info()[1]
            assert exc is not None
            if isinstance(exc, sqlite3.Error):
                # Logged once per state change, not once per reading (a full disk).
                self.faults.failed(exc, reading=batch[0].fn is None)
            else:
                log.error("journal write failed (%s): %s", self.path, exc)
            batch[0].error = exc
            batch[0].done = True
            return
        self._commits += 1
        readings = sum(1 for w in batch if w.fn is None)
        self._appended += readings
        fault = self.faults.current
        if fault is not None and (readings or fault.dropped == 0):
            self.faults.succeeded()
        for w, result in zip(batch, results, strict=True):
            w.result = result
            w.done = True

    def _execute_group(self, conn: sqlite3.Connection, batch: list[_Write]) -> list[Any]:
        """Execute a group in order: each run of scan rows as one ``executemany``."""
        results: list[Any] = []
        run: list[_Write] = []
        for w in batch:
            if w.fn is None:
                run.append(w)
                continue
            if run:
                results.extend(self._insert_rows(conn, run))
                run = []
            results.append(w.fn(conn))
        if run:
            results.extend(self._insert_rows(conn, run))
        return results

    def _insert_rows(self, conn: sqlite3.Connection, run: list[_Write]) -> list[int]:
        """Insert encoded scans; their ids are consecutive (one writer, AUTOINCREMENT)."""
        conn.executemany(_INSERT_SCAN, [(*w.row, self._plan_id(conn, w.plan_key)) for w in run])
        (last_id,) = conn.execute("SELECT last_insert_rowid()").fetchone()
        ids = list(range(last_id - len(run) + 1, last_id + 1))
        alarms = [(sid, *a) for sid, w in zip(ids, run, strict=True) for a in (w.alarms or ())]
        if alarms:
            conn.executemany(_INSERT_ALARM, alarms)
        newest: dict[str, tuple[str, int, int]] = {}
        for sid, w in zip(ids, run, strict=True):
            device, time_us = w.row[0], w.row[1]
            seen = newest.get(device)
            if seen is None or time_us >= seen[2]:
                newest[device] = (device, sid, time_us)
        conn.executemany(_UPSERT_DEVICE, list(newest.values()))
        return ids

    def close(self) -> None:
        """Wait for writes in progress, stop maintenance, close all connections."""
        with self._cv:
            if self._closed:
                return
            self._closed = True
            while self._leading or self._pending:
                self._cv.wait()
        self._stop_maintenance.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=60)
        with contextlib.suppress(sqlite3.Error):
            self._writer_conn.close()
            if self._ckpt_conn is not None:
                self._ckpt_conn.close()
        with self._readers_lock:
            for c in self._readers:
                with contextlib.suppress(sqlite3.Error):
                    c.close()
            self._readers.clear()
        if self._dir_lock is not None:
            self._dir_lock.release()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- forwarder support --------------------------------------------------------------

    def cursors(self) -> tuple[int, int]:
        """(last forwarded scan id, last forwarded rollup id)."""
        rows = dict(
            self._reader()
            .execute("SELECT key, value FROM meta WHERE key IN ('fwd_scan', 'fwd_rollup')")
            .fetchall()
        )
        return int(rows.get("fwd_scan", 0)), int(rows.get("fwd_rollup", 0))

    def set_cursors(self, scan_id: int | None = None, rollup_id: int | None = None) -> None:
        """Persist the forwarder's progress (called only after InfluxDB answered 2xx)."""

        def write(conn: sqlite3.Connection) -> None:
            for key, val in (("fwd_scan", scan_id), ("fwd_rollup", rollup_id)):
                if val is not None:
                    conn.execute(
                        "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) "
                        "DO UPDATE SET value=max(value, excluded.value)",
                        (key, int(val)),
                    )

        self._submit(write)

    def quarantine(
        self,
        *,
        first_scan_id: int | None,
        last_scan_id: int | None,
        status: int,
        message: str,
        lines: str,
    ) -> int:
        """Keep a batch InfluxDB refused (4xx) with its message, for a person to look at."""

        def write(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                "INSERT INTO quarantine(created_us, first_scan_id, last_scan_id, status, "
                "message, line_count, lines) VALUES (?,?,?,?,?,?,?)",
                (
                    time_to_us(datetime.now(UTC)),
                    first_scan_id,
                    last_scan_id,
                    status,
                    message,
                    lines.count("\n"),
                    lines,
                ),
            )
            return cast(int, cur.lastrowid)

        return self._submit(write)

    def quarantined(self, limit: int = 100) -> list[QuarantinedBatch]:
        rows = (
            self._reader()
            .execute(
                "SELECT id, created_us, first_scan_id, last_scan_id, status, message, "
                "line_count, lines, requeued FROM quarantine ORDER BY id DESC LIMIT ?",
                (limit,),
            )
            .fetchall()
        )
        return [
            QuarantinedBatch(r[0], us_to_time(r[1]), r[2], r[3], r[4], r[5], r[6], r[7], bool(r[8]))
            for r in rows
        ]

    def requeue(self, ids: list[int] | None = None) -> list[int]:
        """Mark quarantined batches (all when ``ids`` is None) to be sent again.

        Returns the ids marked; unknown ids are left out (the caller names them).
        The forwarder picks them up within a second, also from another process.
        """

        def write(conn: sqlite3.Connection) -> list[int]:
            if ids is None:
                found = [r[0] for r in conn.execute("SELECT id FROM quarantine ORDER BY id")]
            else:
                found = [
                    i
                    for i in sorted(set(ids))
                    if conn.execute("SELECT 1 FROM quarantine WHERE id=?", (i,)).fetchone()
                ]
            conn.executemany("UPDATE quarantine SET requeued=1 WHERE id=?", [(i,) for i in found])
            return found

        return self._submit(write)

    def requeued_batches(self, limit: int = 10) -> list[QuarantinedBatch]:
        """Requeued batches, oldest first (what the forwarder sends again)."""
        rows = (
            self._reader()
            .execute(
                "SELECT id, created_us, first_scan_id, last_scan_id, status, message, "
                "line_count, lines FROM quarantine WHERE requeued=1 ORDER BY id LIMIT ?",
                (limit,),
            )
            .fetchall()
        )
        return [
            QuarantinedBatch(r[0], us_to_time(r[1]), r[2], r[3], r[4], r[5], r[6], r[7], True)
            for r in rows
        ]

    def drop_quarantined(self, batch_id: int) -> None:
        """A requeued batch reached InfluxDB: it is no longer quarantined."""
        self._submit(lambda conn: conn.execute("DELETE FROM quarantine WHERE id=?", (batch_id,)))

    def requarantine(self, batch_id: int, status: int, message: str) -> None:
        """A requeued batch was refused again: back in quarantine with the new message."""
        self._submit(
            lambda conn: conn.execute(
                "UPDATE quarantine SET requeued=0, status=?, message=? WHERE id=?",
                (status, message, batch_id),
            )
        )

    def quarantined_count(self) -> int:
        return int(self._reader().execute("SELECT count(*) FROM quarantine").fetchone()[0])

    def backlog(self) -> Backlog:
        with self._snapshot() as conn:
            scan_cur, roll_cur = self.cursors()
            n, oldest = conn.execute(
                "SELECT count(*), min(time_us) FROM scans WHERE id > ?", (scan_cur,)
            ).fetchone()
            (nr,) = conn.execute(
                "SELECT count(*) FROM rollups WHERE id > ?", (roll_cur,)
            ).fetchone()
        return Backlog(int(n), oldest, int(nr), scan_cur, roll_cur)

    def read_scans(self, after_id: int, limit: int) -> list[StoredScan]:
        """Scans with id > ``after_id`` in id order (the forwarder's reading order)."""
        with self._snapshot() as conn:
            rows = conn.execute(
                _SELECT_SCAN + " WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit)
            ).fetchall()
            if not rows:
                return []
            alarms = self._alarms_for(conn, rows[0][0], rows[-1][0])
            # The forwarder's hot path: decode every row's blobs with one numpy
            # call each; rows get views into the shared arrays.
            values = dequantise(b"".join(b for r in rows for b in r[13:17]))
            present = np.frombuffer(b"".join(r[11] for r in rows), dtype=np.uint8).astype(np.bool_)
            quality = np.frombuffer(b"".join(r[12] for r in rows), dtype=np.uint8).copy()
            out = []
            pos = 0
            for r in rows:
                n = len(r[11])
                out.append(
                    self._decode_scan(
                        conn,
                        r,
                        alarms.get(r[0], ()),
                        (
                            present[pos : pos + n],
                            quality[pos : pos + n],
                            values[4 * pos : 4 * (pos + n)].reshape(4, n),
                        ),
                    )
                )
                pos += n
            return out

    def read_rollups(self, after_id: int, limit: int) -> list[StoredRollup]:
        with self._snapshot() as conn:
            rows = conn.execute(
                _SELECT_ROLLUP + " WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit)
            ).fetchall()
            return [self._decode_rollup(conn, r) for r in rows]

    # -- reading ------------------------------------------------------------------------

    def devices(self) -> list[str]:
        rows = self._reader().execute("SELECT device FROM devices ORDER BY device").fetchall()
        return [r[0] for r in rows]

    def latest(self, device_id: str) -> Reading | None:
        """The newest stored reading of a device (the API rebuilds its cache from this)."""
        with self._snapshot() as conn:
            row = conn.execute(
                _SELECT_SCAN + " WHERE device=? ORDER BY time_us DESC, id DESC LIMIT 1",
                (device_id,),
            ).fetchone()
            if row is None:
                return None
            alarms = self._alarms_for(conn, row[0], row[0])
            return self._decode_scan(conn, row, alarms.get(row[0], ())).to_reading()

    def alarm_events(
        self, device: str | None = None, since: datetime | None = None, limit: int = 100
    ) -> list[AlarmEvent]:
        """Alarm events, newest first."""
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        where: list[str] = []
        args: list[Any] = []
        if device is not None:
            where.append("device = ?")
            args.append(device)
        if since is not None:
            where.append("time_us >= ?")
            args.append(time_to_us(since))
        sql = _SELECT_ALARM + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY time_us DESC, id DESC LIMIT ?"
        rows = self._reader().execute(sql, (*args, limit)).fetchall()
        return [_decode_alarm(r) for r in rows]

    def active_alarms(self, device: str | None = None) -> list[AlarmEvent]:
        """Alarms whose newest event is a raise, one per (device, kind, channel).

        Decided per key by its newest event however old, so an alarm raised
        long ago and never cleared survives a restart (until retention prunes it).
        """
        newest = (
            "SELECT MAX(id) FROM alarms"
            + (" WHERE device = ?" if device is not None else "")
            + " GROUP BY device, kind, channel"
        )
        sql = f"{_SELECT_ALARM} WHERE id IN ({newest}) AND active = 1 ORDER BY device, channel"
        rows = self._reader().execute(sql, (device,) if device is not None else ()).fetchall()
        return [_decode_alarm(r) for r in rows]

    def scan_count(self, device: str | None = None) -> int:
        if device is None:
            return int(self._reader().execute("SELECT count(*) FROM scans").fetchone()[0])
        return int(
            self._reader()
            .execute("SELECT count(*) FROM scans WHERE device=?", (device,))
            .fetchone()[0]
        )

    def scans_between(self, device: str, start_us: int, end_us: int) -> list[StoredScan]:
        """Raw rows of a device in [start, end), oldest first (history, export)."""
        with self._snapshot() as conn:
            rows = conn.execute(
                _SELECT_SCAN + " WHERE device=? AND time_us>=? AND time_us<? ORDER BY time_us",
                (device, start_us, end_us),
            ).fetchall()
            return [self._decode_scan(conn, r, ()) for r in rows]

    def channel_values_between(
        self, device: str, start_us: int, end_us: int, columns: tuple[str, ...]
    ) -> list[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64]]]:
        """For history: per channel plan, (time_us[n], channel[C], values[len(columns), n, C]).

        Blobs of one plan are joined and decoded at once (no per-row Python work
        beyond fetching).
        """
        for c in columns:
            if c not in CHANNEL_VALUE_COLUMNS:
                raise ValueError(f"unknown channel column {c!r}")
        with self._snapshot() as conn:
            rows = conn.execute(
                f"SELECT time_us, plan_id, {', '.join(columns)} FROM scans "
                "WHERE device=? AND time_us>=? AND time_us<? ORDER BY time_us",
                (device, start_us, end_us),
            ).fetchall()
            return [g[1:] for g in self._group_by_plan(conn, rows, len(columns))]

    def rollup_values_between(
        self, device: str, start_us: int, end_us: int, columns: tuple[str, ...]
    ) -> list[
        tuple[
            npt.NDArray[np.int64],
            npt.NDArray[np.int64],
            npt.NDArray[np.float64],
            npt.NDArray[np.int64],
        ]
    ]:
        """Like :meth:`channel_values_between` for ``rollups``, plus samples per row."""
        for c in columns:
            if c not in ROLLUP_VALUE_COLUMNS:
                raise ValueError(f"unknown rollup column {c!r}")
        with self._snapshot() as conn:
            rows = conn.execute(
                f"SELECT minute_us, plan_id, {', '.join(columns)}, samples FROM rollups "
                "WHERE device=? AND minute_us>=? AND minute_us<? ORDER BY minute_us",
                (device, start_us, end_us),
            ).fetchall()
            groups = self._group_by_plan(conn, [r[:-1] for r in rows], len(columns))
            samples_by_key = {(r[0], r[1]): r[-1] for r in rows}
        return [
            (t, ch, v, np.array([samples_by_key[(x, pid)] for x in t.tolist()], dtype=np.int64))
            for pid, t, ch, v in groups
        ]

    def _group_by_plan(
        self, conn: sqlite3.Connection, rows: list[Any], ncols: int
    ) -> list[tuple[int, npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64]]]:
        """Rows (time, plan_id, blob...) split by plan: (plan_id, time[n], channel, values)."""
        out = []
        plan_ids = sorted({r[1] for r in rows})
        for pid in plan_ids:
            sel = [r for r in rows if r[1] == pid] if len(plan_ids) > 1 else rows
            channel = self._plan(conn, pid).channel
            t = np.array([r[0] for r in sel], dtype=np.int64)
            vals = np.stack(
                [dequantise(b"".join(r[2 + k] for r in sel), len(sel)) for k in range(ncols)]
            ).reshape(ncols, len(sel), channel.size)
            out.append((pid, t, channel, vals))
        return out

    def stats(self) -> JournalStats:
        return JournalStats(
            appended=self._appended,
            commits=self._commits,
            pruned_rows=self._pruned,
            dropped_unforwarded=self._dropped,
            used_bytes=self._used_bytes,
            max_bytes=self.max_bytes,
        )

    # -- decoding -----------------------------------------------------------------------

    def _plan(self, conn: sqlite3.Connection, plan_id: int) -> _StoredPlan:
        with self._plans_lock:
            got = self._plans.get(plan_id)
        if got is None:
            ch_b, f_b, w_b = conn.execute(
                "SELECT channel, frequency_thz, width_ghz FROM plans WHERE id=?", (plan_id,)
            ).fetchone()
            channel = np.frombuffer(ch_b, dtype=np.int16).astype(np.int64)
            freq = np.frombuffer(f_b, dtype=np.float64).copy()
            width = np.frombuffer(w_b, dtype=np.float64).copy() if w_b else _spacing_widths(freq)
            for a in (channel, freq, width):
                a.flags.writeable = False
            got = _StoredPlan(channel, freq, width)
            with self._plans_lock:
                self._plans[plan_id] = got
        return got

    def _alarms_for(
        self, conn: sqlite3.Connection, first_id: int, last_id: int
    ) -> dict[int, tuple[AlarmEvent, ...]]:
        rows = conn.execute(
            _SELECT_ALARM + " WHERE scan_id BETWEEN ? AND ? ORDER BY id", (first_id, last_id)
        ).fetchall()
        out: dict[int, list[AlarmEvent]] = {}
        for r in rows:
            out.setdefault(int(r[-1]), []).append(_decode_alarm(r))
        return {k: tuple(v) for k, v in out.items()}

    def _decode_scan(
        self,
        conn: sqlite3.Connection,
        r: Any,
        alarms: tuple[AlarmEvent, ...],
        arrays: tuple[npt.NDArray[np.bool_], npt.NDArray[np.uint8], npt.NDArray[np.float64]]
        | None = None,
    ) -> StoredScan:
        """A row as a StoredScan; ``arrays`` (present, quality, values) if already decoded."""
        channel, freq, width = self._plan(conn, r[4])
        if arrays is None:
            arrays = (
                np.frombuffer(r[11], dtype=np.uint8).astype(np.bool_),
                np.frombuffer(r[12], dtype=np.uint8).copy(),
                dequantise(r[13] + r[14] + r[15] + r[16], 4),
            )
        return StoredScan(
            id=r[0],
            device=r[1],
            time_us=r[2],
            mode=r[3],
            channel=channel,
            frequency_thz=freq,
            temperature_c=r[5],
            total_power_dbm=_nan_if_none(r[6]),
            lit_channels=int(r[7]),
            tilt_db=_nan_if_none(r[8]),
            flatness_db=_nan_if_none(r[9]),
            min_osnr_db=_nan_if_none(r[10]),
            present=arrays[0],
            quality=arrays[1],
            values=arrays[2],
            alarms=alarms,
            osnr_method=None if r[17] is None else np.frombuffer(r[17], dtype=np.uint8).copy(),
            osnr_uncertainty_db=None if r[18] is None else dequantise(r[18]),
            width_ghz=width,
        )

    def _decode_rollup(self, conn: sqlite3.Connection, r: Any) -> StoredRollup:
        channel = self._plan(conn, r[3]).channel
        return StoredRollup(
            id=r[0],
            device=r[1],
            minute_us=r[2],
            channel=channel,
            samples=int(r[4]),
            values=dequantise(b"".join(r[5:11]), 6),
        )

    # -- maintenance (runs on the writer thread) -----------------------------------------

    def run_maintenance(self, *, close_open_minutes: bool = False) -> None:
        """Roll up complete minutes and apply retention now (normally periodic).

        ``close_open_minutes`` also rolls up each device's newest, still open
        minute (for tests and a clean shutdown).
        """
        self._submit(lambda conn: self._maintain(conn, close_open_minutes=close_open_minutes))
        self._checkpoint()

    def _checkpoint(self) -> None:
        """Give the WAL back to the disk after maintenance (its deletes went through it).

        ``wal_checkpoint(TRUNCATE)`` cannot run inside the group transaction
        maintenance runs in, so it runs here, on a connection of its own, after
        that commit; then ``used_bytes`` is what the disk holds now.
        """
        try:
            conn = self._ckpt_conn
            if conn is None:
                conn = self._ckpt_conn = self._connect()
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._used_bytes = self._used_bytes_now(conn)
        except sqlite3.Error as exc:
            log.debug("journal checkpoint did not complete: %s", exc)

    def _maintain(self, conn: sqlite3.Connection, *, close_open_minutes: bool = False) -> None:
        in_txn = conn.in_transaction
        try:
            if not in_txn:
                conn.execute("BEGIN IMMEDIATE")
            self._roll_up(conn, close_open_minutes)
            for hook in self._maintenance_hooks:
                hook(conn)
            self._prune(conn)
            if not in_txn:
                conn.execute("COMMIT")
        except Exception as exc:
            if not in_txn:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                self.faults.failed(exc, reading=False)  # logged once per state
            else:
                log.exception("journal maintenance failed (%s)", self.path)
            if in_txn:
                raise
            return

    def _roll_up(self, conn: sqlite3.Connection, close_open_minutes: bool) -> None:
        now = time.monotonic()
        devices = conn.execute("SELECT device, last_time_us FROM devices").fetchall()
        for device, last_us in devices:
            last_append = self._last_append_mono.get(device, self._started_mono)
            end_us = (last_us // ROLLUP_PERIOD_US) * ROLLUP_PERIOD_US
            if close_open_minutes or now - last_append > self._rollup_idle_s:
                end_us += ROLLUP_PERIOD_US
            st = conn.execute(
                "SELECT until_us FROM rollup_state WHERE device=?", (device,)
            ).fetchone()
            if st is None:
                (first,) = conn.execute(
                    "SELECT min(time_us) FROM scans WHERE device=?", (device,)
                ).fetchone()
                if first is None:
                    continue
                until_us = (first // ROLLUP_PERIOD_US) * ROLLUP_PERIOD_US
            else:
                until_us = st[0]
            if end_us <= until_us:
                continue
            rows = conn.execute(
                "SELECT time_us, plan_id, power_dbm, osnr_db FROM scans "
                "WHERE device=? AND time_us>=? AND time_us<? ORDER BY time_us",
                (device, until_us, end_us),
            ).fetchall()
            for pid, t, _, vals in self._group_by_plan(conn, rows, 2):
                minute = (t // ROLLUP_PERIOD_US) * ROLLUP_PERIOD_US
                keys, samples, agg = aggregate_buckets(minute, vals)
                conn.executemany(
                    "INSERT OR IGNORE INTO rollups(device, minute_us, plan_id, samples, "
                    "power_dbm_mean, power_dbm_min, power_dbm_max, osnr_db_mean, osnr_db_min, "
                    "osnr_db_max) VALUES (?,?,?,?,?,?,?,?,?,?)",
                    [
                        (
                            device,
                            int(keys[i]),
                            pid,
                            int(samples[i]),
                            *(quantise(agg[q][s][i]).tobytes() for q in range(2) for s in range(3)),
                        )
                        for i in range(keys.size)
                    ],
                )
            conn.execute(
                "INSERT INTO rollup_state(device, until_us) VALUES (?,?) "
                "ON CONFLICT(device) DO UPDATE SET until_us=excluded.until_us",
                (device, end_us),
            )

    def _wal_size(self) -> int:
        try:
            return os.stat(self.wal_path).st_size
        except OSError:
            return 0

    def _used_bytes_now(self, conn: sqlite3.Connection) -> int:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        return int((pages - free) * page_size) + self._wal_size()

    def _prune(self, conn: sqlite3.Connection) -> None:
        cutoff = time_to_us(datetime.now(UTC)) - int(self.retention_days * 86400e6)
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        big = 2**62
        scan_cur = int(meta.get("fwd_scan", 0)) if self.forwarding else big
        roll_cur = int(meta.get("fwd_rollup", 0)) if self.forwarding else big
        for _ in range(20):  # bounded work per pass; the next pass continues
            n = conn.execute(
                "DELETE FROM scans WHERE id IN (SELECT id FROM scans WHERE id <= ? "
                "ORDER BY id LIMIT ?) AND time_us < ?",
                (scan_cur, _PRUNE_CHUNK, cutoff),
            ).rowcount
            self._pruned += n
            if n < _PRUNE_CHUNK:
                break
        conn.execute("DELETE FROM alarms WHERE time_us < ? AND scan_id <= ?", (cutoff, scan_cur))
        conn.execute("DELETE FROM rollups WHERE minute_us < ? AND id <= ?", (cutoff, roll_cur))
        conn.execute("DELETE FROM quarantine WHERE created_us < ?", (cutoff,))
        used = self._used_bytes_now(conn)
        # The size cap wins over everything, forwarded or not: a full disk loses
        # new readings, which is worse than losing the oldest.  The WAL's share
        # is kept free for it (it is bounded, see WAL_LIMIT_BYTES).
        db_cap = self.max_bytes - self.wal_limit_bytes
        for _ in range(20):
            if used - self._wal_size() <= db_cap:
                break
            total = conn.execute("SELECT count(*) FROM scans").fetchone()[0]
            if total == 0:
                break
            excess = used - self._wal_size() - int(db_cap * 0.9)
            n_del = max(1, min(total, math.ceil(excess / max(1, used / total))))
            (last_id,) = conn.execute(
                "SELECT max(id) FROM (SELECT id FROM scans ORDER BY id LIMIT ?)", (n_del,)
            ).fetchone()
            (unfwd,) = conn.execute(
                "SELECT count(*) FROM scans WHERE id <= ? AND id > ?", (last_id, scan_cur)
            ).fetchone()
            conn.execute("DELETE FROM scans WHERE id <= ?", (last_id,))
            conn.execute("DELETE FROM alarms WHERE scan_id <= ?", (last_id,))
            (min_t,) = conn.execute("SELECT min(time_us) FROM scans").fetchone()
            if min_t is not None:
                conn.execute("DELETE FROM rollups WHERE minute_us < ?", (min_t - ROLLUP_PERIOD_US,))
            self._pruned += n_del
            if unfwd:
                self._dropped += unfwd
                self.faults.count_dropped("size_cap", unfwd)
                log.warning(
                    "journal %s over max_bytes=%d: dropped %d rows never forwarded to InfluxDB "
                    "(%d dropped in total)",
                    self.path,
                    self.max_bytes,
                    unfwd,
                    self._dropped,
                )
            used = self._used_bytes_now(conn)
        self._used_bytes = used


def _osnr_provenance(reading: Reading, n: int) -> tuple[bytes | None, bytes | None]:
    """The ``osnr_method`` and ``osnr_uncertainty_db`` blobs of a reading (None when the
    reading has none, e.g. a port scan)."""
    method, unc = reading.osnr_method, reading.osnr_uncertainty_db
    for name, value in (("osnr_method", method), ("osnr_uncertainty_db", unc)):
        size = None if value is None else np.asarray(value).size
        if size is not None and size != n:
            raise ValueError(f"reading.{name} has {size} values for {n} channels")
    return (
        None if method is None else np.asarray(method, dtype=np.uint8).tobytes(),
        None if unc is None else quantise(unc).tobytes(),
    )


#: Columns added to ``scans`` after its first release: (name, declaration).
_ADDED_SCAN_COLUMNS = (("osnr_method", "BLOB"), ("osnr_uncertainty_db", "BLOB"))


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring a journal made by an older version up to this schema (checked ALTERs)."""
    plan_cols = {r[1] for r in conn.execute("PRAGMA table_info(plans)").fetchall()}
    if "width_ghz" not in plan_cols:
        _migrate_plan_widths(conn)
    scan_cols = {r[1] for r in conn.execute("PRAGMA table_info(scans)").fetchall()}
    for name, decl in _ADDED_SCAN_COLUMNS:
        if name not in scan_cols:
            conn.execute(f"ALTER TABLE scans ADD COLUMN {name} {decl}")
    cols = {r[1] for r in conn.execute("PRAGMA table_info(quarantine)").fetchall()}
    if "requeued" not in cols:
        conn.execute("ALTER TABLE quarantine ADD COLUMN requeued INTEGER NOT NULL DEFAULT 0")
    alarm_columns = {r[1] for r in conn.execute("PRAGMA table_info(alarms)").fetchall()}
    if "reason" not in alarm_columns:
        conn.execute("ALTER TABLE alarms ADD COLUMN reason TEXT")


def _outcome(w: _Write) -> Any:
    if w.error is not None:
        raise w.error
    return w.result


_SELECT_SCAN = (
    "SELECT id, device, time_us, mode, plan_id, temperature_c, total_power_dbm, lit_channels, "
    "tilt_db, flatness_db, min_osnr_db, present, quality, power_dbm, signal_power_dbm, "
    "osnr_db, offset_ghz, osnr_method, osnr_uncertainty_db FROM scans"
)
_SELECT_ROLLUP = (
    "SELECT id, device, minute_us, plan_id, samples, power_dbm_mean, power_dbm_min, "
    "power_dbm_max, osnr_db_mean, osnr_db_min, osnr_db_max FROM rollups"
)
_SELECT_ALARM = (
    "SELECT device, time_us, kind, channel, active, value, threshold, reason, scan_id FROM alarms"
)


def _decode_alarm(r: Any) -> AlarmEvent:
    return AlarmEvent(
        device_id=r[0],
        time=us_to_time(r[1]),
        kind=AlarmKind(r[2]),
        channel=r[3],
        active=bool(r[4]),
        value=r[5],
        threshold=r[6],
        reason=None if r[7] is None else ClearReason(r[7]),
    )


@dataclass(frozen=True, slots=True)
class _StoredPlan:
    """A ``plans`` row decoded (read-only arrays, shared by the scans that use it)."""

    channel: npt.NDArray[np.int64]
    frequency_thz: npt.NDArray[np.float64]
    width_ghz: npt.NDArray[np.float64]

    def __iter__(self) -> Iterator[npt.NDArray[Any]]:
        return iter((self.channel, self.frequency_thz, self.width_ghz))


def _widths_blob(width_ghz: npt.ArrayLike, n: int) -> bytes:
    width = np.asarray(width_ghz, dtype=np.float64)
    if width.size != n:
        raise ValueError(f"reading.width_ghz has {width.size} values for {n} channels")
    return width.tobytes()


def _spacing_widths(frequency_thz: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Widths for a plan stored before widths were (journals older than the flex grid):
    those plans were regular or had one slot width, so each channel's width is the plan's
    spacing, the smallest step between centres (50 GHz for a single channel, the default
    plan's spacing)."""
    if frequency_thz.size < 2:
        return np.full(frequency_thz.size, DEFAULT_SPACING_GHZ)
    spacing_ghz = float(np.round(np.min(np.diff(frequency_thz)) * 1000.0, 3))
    return np.full(frequency_thz.size, spacing_ghz)


def _migrate_plan_widths(conn: sqlite3.Connection) -> None:
    """Give ``plans`` its ``width_ghz`` column, and make the column part of the plan's
    identity (a flex plan may share its centres with an older plan of other widths).
    SQLite cannot change a UNIQUE constraint in place, so the table is rebuilt with the
    same ids (the scans and rollups refer to them); old rows get an empty width, read
    back as the plan's spacing (:func:`_spacing_widths`)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            "CREATE TABLE plans_flex(id INTEGER PRIMARY KEY, channel BLOB NOT NULL, "
            "frequency_thz BLOB NOT NULL, width_ghz BLOB NOT NULL DEFAULT x'', "
            "UNIQUE(channel, frequency_thz, width_ghz))"
        )
        conn.execute(
            "INSERT INTO plans_flex(id, channel, frequency_thz, width_ghz) "
            "SELECT id, channel, frequency_thz, x'' FROM plans"
        )
        conn.execute("DROP TABLE plans")
        conn.execute("ALTER TABLE plans_flex RENAME TO plans")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _encode(
    reading: Reading,
) -> tuple[tuple[Any, ...], tuple[bytes, bytes, bytes], list[tuple[Any, ...]]]:
    """Validate and turn a reading into column values (in the caller's thread)."""
    if not reading.device_id:
        raise ValueError("reading.device_id must not be empty")
    n = reading.channel.size
    for name in ("frequency_thz", "present", "quality", *CHANNEL_VALUE_COLUMNS):
        size = np.asarray(getattr(reading, name)).size
        if size != n:
            raise ValueError(f"reading.{name} has {size} values for {n} channels")
    time_us = time_to_us(reading.time)
    # One rounding for all four arrays (sizes checked above): this runs per scan.
    values = quantise([getattr(reading, c) for c in CHANNEL_VALUE_COLUMNS])
    width = b"" if reading.width_ghz is None else _widths_blob(reading.width_ghz, n)
    plan_key = (
        np.asarray(reading.channel, dtype=np.int16).tobytes(),
        np.asarray(reading.frequency_thz, dtype=np.float64).tobytes(),
        width,
    )
    row = (
        reading.device_id,
        time_us,
        str(reading.mode),
        _none_if_nan(reading.temperature_c),
        _none_if_nan(reading.total_power_dbm),
        int(reading.lit_channels),
        _none_if_nan(reading.tilt_db),
        _none_if_nan(reading.flatness_db),
        _none_if_nan(reading.min_osnr_db),
        np.asarray(reading.present, dtype=np.uint8).tobytes(),
        np.asarray(reading.quality, dtype=np.uint8).tobytes(),
        *(v.tobytes() for v in values),
        *_osnr_provenance(reading, n),
    )
    alarms = [_encode_alarm(a) for a in reading.alarms]
    return row, plan_key, alarms


def _encode_alarm(a: AlarmEvent) -> tuple[Any, ...]:
    """The alarms-table columns after ``scan_id``."""
    return (
        a.device_id,
        time_to_us(a.time),
        str(a.kind.value),
        a.channel,
        int(a.active),
        _none_if_nan(a.value),
        _none_if_nan(a.threshold),
        None if a.reason is None else a.reason.value,
    )


def aggregate_buckets(
    bucket_us: npt.NDArray[np.int64], values: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Per bucket mean/min/max of each quantity, skipping NaN, vectorised over channels.

    ``bucket_us`` (n,) is sorted; ``values`` is (quantities, n, channels).
    Returns the bucket keys (m,), rows per bucket (m,) and (quantities, 3, m,
    channels) with mean, min, max (NaN where a bucket had no finite value).
    """
    if bucket_us.size == 0:
        q, _, c = values.shape
        return bucket_us, np.zeros(0, np.int64), np.zeros((q, 3, 0, c))
    starts = np.flatnonzero(np.r_[True, bucket_us[1:] != bucket_us[:-1]])
    keys = bucket_us[starts]
    samples = np.diff(np.r_[starts, bucket_us.size]).astype(np.int64)
    finite = np.isfinite(values)
    sums = np.add.reduceat(np.where(finite, values, 0.0), starts, axis=1)
    counts = np.add.reduceat(finite, starts, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    with np.errstate(invalid="ignore"):
        mn = np.fmin.reduceat(values, starts, axis=1)
        mx = np.fmax.reduceat(values, starts, axis=1)
    return keys, samples, np.stack([mean, mn, mx], axis=1)
