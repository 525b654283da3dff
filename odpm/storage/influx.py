"""The InfluxDB forwarder: journal rows out as line protocol, nothing lost, nothing twice.

Two threads per forwarder.  The *encoder* reads journal rows after the
forwarder's in-memory position and renders line-protocol batches of at most
``batch_lines`` lines into a small bounded queue (so memory stays flat however
long InfluxDB is away: the backlog lives on disk).  The *sender* posts each
batch and persists the journal cursor only after a 2xx, strictly in order, so
after any crash the next run resumes at the first batch not acknowledged.
A batch that was written but not acknowledged before a crash is sent again;
that is harmless because an InfluxDB point is identified by measurement, tag
set and timestamp, and writing it again overwrites it with the same values.

Errors are classified once, for both dialects:

* connection errors, timeouts, 408, 429 and 5xx -> :class:`TransientWriteError`:
  exponential backoff with jitter (capped, 30 s by default), retry forever;
* 401 and 403 -> :class:`AuthWriteError`: state ``auth_failed``, logged, shown in
  :attr:`Forwarder.stats`; retried every ``auth_retry_s`` until credentials work;
* 404 -> :class:`MissingTargetError`: the database (v1) or bucket (v2) does not
  exist.  That is a configuration state, not bad data: with the v1 dialect and
  ``create_database`` the forwarder runs ``CREATE DATABASE`` (as Telegraf does)
  and resends; otherwise, or if creation is refused, forwarding *pauses*
  (state ``paused``, a message naming the database and the fix) and every row
  stays in the journal;
* 400 and 422 (unparseable line protocol, field type conflict) ->
  :class:`RejectedBatchError`: only these batches go to the journal's
  ``quarantine`` table with the server's message and forwarding moves on
  (``odpm storage requeue`` sends them again once the cause is fixed);
* any other 4xx (405, 413 ...) -> :class:`PausedWriteError`: pause and retry,
  since the same batch might well succeed once the server or config is fixed.

Neither thread dies of an exception: anything unexpected (a full disk under
the journal's cursor update, a bug) is logged once per state change, backed
off and retried, so forwarding resumes by itself once the cause is gone.

Dialects: ``v1`` POSTs to ``/write`` with httpx (InfluxDB 1.x, 2.x through its v1
compatibility API, 3.x); ``v2`` uses influxdb-client's *synchronous* write API
(its batching mode is known to lose data; batching and retries are ours).
"""

from __future__ import annotations

import functools
import logging
import queue
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from odpm.config import InfluxConfig
from odpm.models import AlarmEvent
from odpm.storage.influx_writers import (
    AuthWriteError,
    DatabaseCreator,
    LineWriter,
    MissingTargetError,
    PausedWriteError,
    RejectedBatchError,
    WriteError,
    make_writer,
)
from odpm.storage.journal import Journal, StoredRollup, StoredScan, time_to_us
from odpm.storage.lineprotocol import (
    CHANNEL_FLOAT_FIELDS,
    MEASUREMENT_CHANNEL,
    ChannelBlock,
    ChannelLineEncoder,
    alarm_line,
    scan_line,
)

log = logging.getLogger(__name__)

ForwarderState = Literal["idle", "sending", "backoff", "auth_failed", "paused", "stopped"]

#: Ceiling of the retry delay after connection errors and 5xx (the issue's 30 s).
DEFAULT_BACKOFF_MAX_S = 30.0
#: How often the sender looks for quarantined batches a person has requeued.
REQUEUE_POLL_S = 1.0


def _scan_tail(s: StoredScan) -> str:
    """What follows a row's channel lines: its ``scan`` line and its ``alarm`` lines."""
    parts = [
        scan_line(
            s.device,
            s.mode,
            s.time_us,
            total_power_dbm=s.total_power_dbm,
            lit_channels=s.lit_channels,
            tilt_db=s.tilt_db,
            flatness_db=s.flatness_db,
            min_osnr_db=s.min_osnr_db,
            temperature_c=s.temperature_c,
        )
    ]
    parts.extend(alarm_event_line(a) for a in s.alarms)
    return "".join(parts)


def alarm_event_line(a: AlarmEvent) -> str:
    """The ``alarm`` line of one event."""
    return alarm_line(
        a.device_id,
        time_to_us(a.time),
        kind=a.kind.value,
        channel=a.channel,
        active=a.active,
        value=a.value,
        threshold=a.threshold,
        reason=None if a.reason is None else a.reason.value,
    )


@dataclass(frozen=True, slots=True)
class ForwarderStats:
    """A snapshot for health endpoints and metrics."""

    state: ForwarderState
    #: Journal scans not yet acknowledged by InfluxDB.
    backlog_rows: int
    #: Age of the oldest of them (reading time to now), None when there are none.
    oldest_unforwarded_age_s: float | None
    backlog_rollups: int
    forwarded_rows: int
    forwarded_points: int
    forwarded_batches: int
    retries: int
    quarantined_batches: int
    last_error: str | None
    last_success: datetime | None
    #: When this process last quarantined a batch (health: "quarantining").
    last_quarantined: datetime | None = None


@dataclass(frozen=True, slots=True)
class _Batch:
    body: str
    lines: int
    rows: int
    first_scan_id: int | None
    last_scan_id: int | None
    last_rollup_id: int | None
    #: The last scan-less alarm event (``device_lost``) in the batch.
    last_alarm_id: int | None = None


class Forwarder:
    """Ships journal rows to InfluxDB.  ``start()``, ``stop()``, ``stats``.

    ``writer`` replaces the dialect's writer (tests, benchmarks); the timing
    knobs exist so tests do not wait for the production intervals.
    """

    def __init__(
        self,
        journal: Journal,
        config: InfluxConfig,
        *,
        writer: LineWriter | None = None,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = DEFAULT_BACKOFF_MAX_S,
        auth_retry_s: float = 30.0,
        poll_interval_s: float = 0.2,
        prefetch_batches: int = 2,
        rng: random.Random | None = None,
    ) -> None:
        if backoff_initial_s <= 0 or backoff_max_s < backoff_initial_s:
            raise ValueError(
                f"need 0 < backoff_initial_s <= backoff_max_s, got {backoff_initial_s}, "
                f"{backoff_max_s}"
            )
        if poll_interval_s <= 0 or auth_retry_s <= 0:
            raise ValueError("poll_interval_s and auth_retry_s must be > 0")
        self._journal = journal
        self._config = config
        self._writer = writer if writer is not None else make_writer(config)
        self._batch_lines = config.batch_lines
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._auth_retry_s = auth_retry_s
        self._poll_s = poll_interval_s
        self._rng = rng or random.Random()
        self._queue: queue.Queue[_Batch] = queue.Queue(maxsize=max(1, prefetch_batches))
        self._stop = threading.Event()
        self._encoder = ChannelLineEncoder()
        self._state: ForwarderState = "stopped"
        self._forwarded_rows = 0
        self._forwarded_points = 0
        self._forwarded_batches = 0
        self._retries = 0
        self._quarantined = 0
        self._last_error: str | None = None
        self._last_success: datetime | None = None
        self._last_quarantined: datetime | None = None
        self._last_unexpected: str | None = None
        self._requeue_checked = float("-inf")
        self._threads: list[threading.Thread] = []
        #: Where the encoder has queued up to (scan id, rollup id); None: read the cursors.
        self._positions: tuple[int, int] | None = None

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        if self._threads:
            raise RuntimeError("forwarder already started")
        self._stop.clear()
        self._state = "idle"
        self._positions = None
        self._threads = [
            threading.Thread(target=self._encode_loop, name="odpm-fwd-encode", daemon=True),
            threading.Thread(target=self._send_loop, name="odpm-fwd-send", daemon=True),
        ]
        for t in self._threads:
            t.start()

    def stop(self, timeout_s: float = 15.0) -> None:
        """Stop after the request in flight; unacknowledged batches are resent next start."""
        self._stop.set()
        for t in self._threads:
            t.join(timeout=timeout_s)
        self._threads = []
        self._state = "stopped"
        self._writer.close()

    def __enter__(self) -> Forwarder:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def stats(self) -> ForwarderStats:
        b = self._journal.backlog()
        age = None
        if b.oldest_time_us is not None:
            age = max(0.0, (time_to_us(datetime.now(UTC)) - b.oldest_time_us) / 1e6)
        return ForwarderStats(
            state=self._state,
            backlog_rows=b.rows,
            oldest_unforwarded_age_s=age,
            backlog_rollups=b.rollup_rows,
            forwarded_rows=self._forwarded_rows,
            forwarded_points=self._forwarded_points,
            forwarded_batches=self._forwarded_batches,
            retries=self._retries,
            quarantined_batches=self._quarantined,
            last_error=self._last_error,
            last_success=self._last_success,
            last_quarantined=self._last_quarantined,
        )

    def wait_drained(self, timeout_s: float) -> bool:
        """True once every journal row (and rollup) is acknowledged (tests, shutdown)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            b = self._journal.backlog()
            if b.rows == 0 and b.rollup_rows == 0:
                return True
            time.sleep(min(0.05, self._poll_s))
        return False

    # -- encoding -----------------------------------------------------------------------

    def encode_scan(self, s: StoredScan) -> str:
        """All lines of one journal row: its channels, its scan line, its alarm events."""
        return self.encode_scans([s])

    def encode_scans(self, scans: Sequence[StoredScan]) -> str:
        """The lines of several rows in journal order, the channel lines vectorised over all.

        Identical to joining :meth:`encode_scan` of each; this is the hot path
        (see :class:`~odpm.storage.lineprotocol.ChannelLineEncoder`).
        """
        enc = self._encoder
        blocks = [
            ChannelBlock(
                s.device,
                s.time_us,
                s.channel,
                s.values,
                enc.present_suffix(s.present),
                _scan_tail(s),
            )
            for s in scans
        ]
        return enc.render(MEASUREMENT_CHANNEL, CHANNEL_FLOAT_FIELDS, blocks)

    def encode_rollup(self, r: StoredRollup) -> str:
        return self._encoder.rollup_lines(r.device, r.minute_us, r.channel, r.values, r.samples)

    def _put(self, batch: _Batch) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(batch, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _encode_loop(self) -> None:
        """Encode until stopped; an exception (the journal unreadable for a while, a
        bug) is logged once, backed off and retried from the last queued position."""
        attempt = 0
        while not self._stop.is_set():
            try:
                if self._positions is None:
                    self._positions = self._journal.cursors()
                self._encode_loop_inner()
                return
            except Exception as exc:  # never die: the backlog would grow unseen
                self._unexpected("encoder", exc)
                self._stop.wait(self._backoff_delay(attempt))
                attempt += 1

    def _encode_loop_inner(self) -> None:
        assert self._positions is not None
        scan_pos, rollup_pos = self._positions
        alarm_pos = self._journal.alarm_cursor()
        pending: list[StoredScan] = []
        per_scan_guess = 81
        while not self._stop.is_set():
            made = False
            standalone = self._journal.read_standalone_alarms(alarm_pos, self._batch_lines)
            if standalone:
                body = "".join(alarm_event_line(a) for _, a in standalone)
                last_alarm = standalone[-1][0]
                if not self._put(_Batch(body, len(standalone), 0, None, None, None, last_alarm)):
                    return
                alarm_pos = last_alarm
                made = True
            rollups = self._journal.read_rollups(
                rollup_pos, max(1, self._batch_lines // per_scan_guess)
            )
            if rollups:
                body = "".join(self.encode_rollup(r) for r in rollups)
                lines = sum(r.channel.size for r in rollups)
                if not self._put(_Batch(body, lines, 0, None, None, rollups[-1].id)):
                    return
                rollup_pos = rollups[-1].id
                self._positions = (scan_pos, rollup_pos)
                made = True
            batch_scans: list[StoredScan] = []
            lines = 0
            first: int | None = None
            last: int | None = None
            rows = 0
            while True:
                if not pending:
                    after = last if last is not None else scan_pos
                    pending = self._journal.read_scans(
                        after, max(1, self._batch_lines // per_scan_guess + 1)
                    )
                    pending.reverse()
                    if not pending:
                        break
                s = pending[-1]
                n = s.channel.size + 1 + len(s.alarms)
                per_scan_guess = max(1, n)
                if rows and lines + n > self._batch_lines:
                    break
                pending.pop()
                batch_scans.append(s)
                lines += n
                rows += 1
                first = s.id if first is None else first
                last = s.id
            if rows:
                body = self.encode_scans(batch_scans)
                if not self._put(_Batch(body, lines, rows, first, last, None)):
                    return
                assert last is not None
                scan_pos = last
                self._positions = (scan_pos, rollup_pos)
                made = True
            if not made:
                self._stop.wait(self._poll_s)

    # -- sending ------------------------------------------------------------------------

    def _send_loop(self) -> None:
        """Deliver batches in order; survives anything (see the module docstring)."""
        self._prepare_target()
        attempt = 0
        while not self._stop.is_set():
            try:
                self._send_requeued()
                try:
                    batch = self._queue.get(timeout=self._poll_s)
                except queue.Empty:
                    if self._state == "sending":
                        self._state = "idle"
                    continue
                self._deliver(batch)
                attempt = 0
            except Exception as exc:  # never die: the backlog would grow unseen
                self._unexpected("sender", exc)
                self._stop.wait(self._backoff_delay(attempt))
                attempt += 1

    def _unexpected(self, where: str, exc: BaseException) -> None:
        """Log an unexpected failure once per distinct message, keep it in the stats."""
        text = f"{where}: {type(exc).__name__}: {exc}"
        if text != self._last_unexpected:
            # A journal on a full disk is expected to recover: one line.  Anything
            # else is a bug worth its traceback (once).
            expected = isinstance(exc, sqlite3.Error | OSError)
            log.error(
                "InfluxDB forwarder %s failed (%s); retrying",
                where,
                exc,
                exc_info=None if expected else exc,
            )
            self._last_unexpected = text
        self._last_error = text

    def _prepare_target(self) -> None:
        """At start, create the v1 database if allowed (quietly: it may exist already)."""
        if not self._can_create():
            return
        try:
            assert isinstance(self._writer, DatabaseCreator)
            self._writer.create_database()
        except Exception as exc:
            # A user with write but no admin rights cannot create an existing
            # database either; only a write answering 404 says it is missing.
            log.debug("CREATE DATABASE at start did not succeed: %s", exc)

    def _can_create(self) -> bool:
        return (
            self._config.create_database
            and self._config.dialect == "v1"
            and isinstance(self._writer, DatabaseCreator)
        )

    def _missing_target(self, exc: MissingTargetError) -> str | None:
        """Handle a 404: None after creating the database (resend now), else why paused."""
        cfg = self._config
        if cfg.dialect == "v2":
            return (
                f"InfluxDB has no bucket {cfg.bucket!r} in org {cfg.org!r} ({exc.message}); "
                "create it (influx bucket create) or fix storage.influx.bucket/org "
                '(an InfluxDB 1.x before 1.8 has no v2 API: use dialect = "v1")'
            )
        if not self._can_create():
            return (
                f"InfluxDB has no database {cfg.database!r} ({exc.message}) and "
                f"storage.influx.create_database is false: run CREATE DATABASE "
                f'"{cfg.database}" on the server, or fix storage.influx.database'
            )
        try:
            assert isinstance(self._writer, DatabaseCreator)
            self._writer.create_database()
        except WriteError as create_exc:
            return (
                f"InfluxDB has no database {cfg.database!r} and refused to create it "
                f"({create_exc.message}): create it with an admin user (CREATE DATABASE "
                f'"{cfg.database}") and grant this user WRITE on it, or fix '
                "storage.influx.database"
            )
        log.info("created InfluxDB database %r (a write answered: %s)", cfg.database, exc.message)
        return None

    def _pause(self, state: ForwarderState, message: str) -> None:
        """Enter a state that waits for a person; log when it (or its reason) changes."""
        if self._state != state or self._last_error != message:
            log.error(
                "%s; forwarding paused, every reading stays in the journal, retrying every %.0f s",
                message,
                self._auth_retry_s,
            )
        self._state = state
        self._last_error = message
        self._retries += 1
        self._stop.wait(self._auth_retry_s)

    def _write(self, body: str) -> bool | RejectedBatchError:
        """Write one body: True once written, the error if rejected as bad data.

        False when stopped first.  Retries transient failures with backoff and
        pauses on configuration problems, however long they last.
        """
        attempt = 0
        while not self._stop.is_set():
            if self._state not in ("backoff", "auth_failed", "paused"):
                self._state = "sending"
            try:
                self._writer.write(body)
            except AuthWriteError as exc:
                self._pause(
                    "auth_failed",
                    f"InfluxDB refused our credentials ({exc.message}); check "
                    "storage.influx token/username/password",
                )
                continue
            except MissingTargetError as exc:
                why = self._missing_target(exc)
                if why is not None:
                    self._pause("paused", why)
                continue
            except PausedWriteError as exc:
                self._pause(
                    "paused",
                    f"InfluxDB refused the write ({exc.message}); check storage.influx "
                    "(url, batch_lines) and the server",
                )
                continue
            except RejectedBatchError as exc:
                return exc
            except Exception as exc:  # TransientWriteError, or anything a writer raised
                message = exc.message if isinstance(exc, WriteError) else f"{exc!r}"
                if self._state != "backoff":
                    log.warning("InfluxDB write failed (%s); backing off", message)
                self._state = "backoff"
                self._last_error = message
                self._retries += 1
                self._stop.wait(self._backoff_delay(attempt))
                attempt += 1
                continue
            if self._state in ("backoff", "auth_failed", "paused"):
                log.info("InfluxDB writes succeed again")
            self._state = "sending"
            return True
        return False

    def _deliver(self, batch: _Batch) -> None:
        outcome = self._write(batch.body)
        if outcome is False:
            return  # stopped before it was written: resent next start
        if isinstance(outcome, RejectedBatchError):
            rejected = outcome.message
            if not self._persist(
                lambda: self._journal.quarantine(
                    first_scan_id=batch.first_scan_id,
                    last_scan_id=batch.last_scan_id,
                    status=outcome.status or 0,
                    message=rejected,
                    lines=batch.body,
                )
            ):
                return  # stopping before it was kept: not acknowledged, sent again next start
            self._quarantined += 1
            self._last_quarantined = datetime.now(UTC)
            self._last_error = f"batch quarantined: {rejected}"
            log.warning(
                "InfluxDB rejected a batch of %d lines (scans %s..%s): %s; quarantined "
                "(see odpm storage status)",
                batch.lines,
                batch.first_scan_id,
                batch.last_scan_id,
                rejected,
            )
            self._ack(batch, delivered=False)
            return
        self._ack(batch, delivered=True)

    def _persist(self, fn: Callable[[], object]) -> bool:
        """Run a journal write until it succeeds (a full disk clears) or we stop."""
        attempt = 0
        while True:
            try:
                fn()
                if attempt:
                    log.info("InfluxDB forwarder: journal update succeeds again")
                return True
            except Exception as exc:
                self._unexpected("journal update", exc)
                if self._stop.wait(self._backoff_delay(attempt)):
                    return False
                attempt += 1

    def _ack(self, batch: _Batch, *, delivered: bool) -> None:
        """Persist the cursors past ``batch``; retried until the journal takes it."""
        if not self._persist(
            lambda: self._journal.set_cursors(
                scan_id=batch.last_scan_id, rollup_id=batch.last_rollup_id
            )
        ):
            return  # stopping: the batch is sent again next start (harmless)
        if batch.last_alarm_id is not None:
            alarm_id = batch.last_alarm_id
            if not self._persist(lambda: self._journal.set_alarm_cursor(alarm_id)):
                return
        self._last_unexpected = None
        if delivered:
            self._forwarded_rows += batch.rows
            self._forwarded_points += batch.lines
            self._forwarded_batches += 1
            self._last_success = datetime.now(UTC)

    def _send_requeued(self) -> None:
        """Send the quarantined batches a person requeued, oldest first (at most every 1 s)."""
        now = time.monotonic()
        if now - self._requeue_checked < REQUEUE_POLL_S:
            return
        self._requeue_checked = now
        for qb in self._journal.requeued_batches(limit=10):
            if self._stop.is_set():
                return
            outcome = self._write(qb.lines)
            if outcome is False:
                return
            if outcome is True:
                self._persist(functools.partial(self._journal.drop_quarantined, qb.id))
                self._forwarded_points += qb.line_count
                self._forwarded_batches += 1
                self._last_success = datetime.now(UTC)
                log.info("requeued batch %d (%d lines) written to InfluxDB", qb.id, qb.line_count)
            else:
                self._persist(
                    functools.partial(
                        self._journal.requarantine, qb.id, outcome.status or 0, outcome.message
                    )
                )
                self._last_quarantined = datetime.now(UTC)
                log.warning("requeued batch %d rejected again: %s", qb.id, outcome.message)

    def _backoff_delay(self, attempt: int) -> float:
        """Exponential backoff with jitter: half the step fixed, half random."""
        step = min(self._backoff_max_s, self._backoff_initial_s * 2.0 ** min(attempt, 30))
        return step * (0.5 + 0.5 * self._rng.random())
