"""Opening the journal safely: one service per data dir, a damaged file moved aside.

* :class:`DataDirLock`: an OS file lock (``flock``) on ``data_dir/odpm.lock``,
  holding the owner's pid.  A second ``odpm serve`` on the same data dir is
  refused with one line naming the process that holds it.  The kernel releases
  the lock when the process ends, however it ends (``kill -9`` included), so a
  crash never leaves a stale lock behind.
* :func:`check_journal`: ``PRAGMA quick_check`` on an existing journal before
  the service uses it.  A file that is not a database or fails the check is
  renamed ``journal.corrupt-<UTC time>.sqlite3`` (with its ``-wal``/``-shm``)
  and a new journal is started: acquisition goes on, the damaged file is kept
  for a person (``sqlite3 ... .recover`` often gets most rows back).
* Both turn an unwritable or read-only data dir into :class:`JournalOpenError`,
  one line the CLI prints before exiting with status 2.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import sqlite3
import time
from pathlib import Path

log = logging.getLogger(__name__)

#: The lock file inside ``storage.data_dir``.
LOCK_FILE = "odpm.lock"


class JournalOpenError(OSError):
    """The journal cannot be opened for writing; the message is one line for a person."""


class DataDirLockedError(JournalOpenError):
    """Another process holds the data dir."""


def unwritable(data_dir: Path, exc: OSError) -> JournalOpenError:
    why = exc.strerror or str(exc)
    return JournalOpenError(
        f"cannot write the journal in {data_dir}: {why}; make the directory writable or "
        "choose another storage.data_dir (--data-dir)"
    )


def _describe_pid(pid: int) -> str:
    """``pid 123 (python -m odpm serve ...)`` when /proc tells the command line."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return f"pid {pid}"
    cmd = " ".join(p.decode(errors="replace") for p in raw.split(b"\0") if p)
    return f"pid {pid} ({cmd[:200]})" if cmd else f"pid {pid}"


class DataDirLock:
    """An exclusive, non-blocking ``flock`` on ``data_dir/odpm.lock``."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise unwritable(self.data_dir, exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = b""
            with contextlib.suppress(OSError):
                holder = os.pread(fd, 64, 0)
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise unwritable(self.data_dir, exc) from None
            text = holder.decode(errors="replace").strip()
            who = _describe_pid(int(text)) if text.isdigit() else "another process"
            raise DataDirLockedError(
                f"data dir {self.data_dir} is in use by {who}: one odpm serve per data dir; "
                "stop that one or give this one another --data-dir"
            ) from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as exc:
            os.close(fd)
            raise unwritable(self.data_dir, exc) from None
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing releases the flock
            self._fd = None


def check_journal(path: Path) -> Path | None:
    """Check an existing journal; move it aside if damaged.  Returns where it went.

    Raises :class:`JournalOpenError` when the file or its directory cannot be
    written (a read-only mount, permissions).
    """
    path = Path(path)
    if not path.exists():
        return None
    problem: str | None = None
    try:
        conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=30)
        try:
            rows = conn.execute("PRAGMA quick_check").fetchall()
        finally:
            conn.close()
        if rows != [("ok",)]:
            problem = "; ".join(str(r[0]) for r in rows[:3])
    except sqlite3.DatabaseError as exc:
        text = str(exc).lower()
        if "not a database" in text or "malformed" in text or "corrupt" in text:
            problem = str(exc)
        else:
            raise JournalOpenError(
                f"cannot open the journal {path}: {exc}; make {path.parent} writable or "
                "choose another storage.data_dir (--data-dir)"
            ) from None
    if problem is None:
        return None
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    dest = path.with_name(f"{path.stem}.corrupt-{stamp}{path.suffix}")
    try:
        for suffix in ("-wal", "-shm"):
            side = path.with_name(path.name + suffix)
            if side.exists():
                os.replace(side, dest.with_name(dest.name + suffix))
        os.replace(path, dest)
    except OSError as exc:
        raise unwritable(path.parent, exc) from None
    log.error(
        "journal %s is damaged (%s): moved aside to %s, starting a new journal",
        path,
        problem[:300],
        dest.name,
    )
    return dest
