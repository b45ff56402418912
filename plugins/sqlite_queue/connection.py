"""Opening the queue file (WAL, synchronous=FULL, schema) and turning SQLite errors into queue errors."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from mailpipe.core.queue import QueueError, QueueFull

from .schema import create_schema


def translate(exc: sqlite3.Error, path: Path) -> QueueError:
    """The queue error for an SQLite error: ``QueueFull`` for a full disk, a clear text for the rest.

    Called by ``SqliteQueue`` for every failed job; the text names the file and says what to do.
    """
    name = getattr(exc, "sqlite_errorname", "")
    if name == "SQLITE_FULL" or "disk is full" in str(exc):
        return QueueFull(f"queue {path}: storage is full ({exc})")
    if name in ("SQLITE_BUSY", "SQLITE_LOCKED") or "locked" in str(exc):
        return QueueError(f"queue {path} is locked by another process ({exc})")
    if name in ("SQLITE_NOTADB", "SQLITE_CORRUPT") or "not a database" in str(exc) or "malformed" in str(exc):
        return QueueError(f"queue {path} is not a usable SQLite database ({exc}); "
                          "move it aside to start afresh")
    return QueueError(f"queue {path}: {exc}")


def connect(path: Path, busy_timeout: float) -> sqlite3.Connection:
    """Open (creating or upgrading) the queue file; called once, on the worker thread.

    The connection is in autocommit mode (the worker opens its own transactions), in WAL
    journal mode with ``synchronous=FULL``. Raises ``QueueError`` with a clear text when the
    file cannot be used.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise QueueError(f"queue {path}: cannot create its folder: {exc.strerror}") from exc
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=busy_timeout)
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            raise QueueError(f"queue {path}: cannot switch to WAL journal mode (got {mode})")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = OFF")
        conn.execute("BEGIN IMMEDIATE")
        try:
            create_schema(conn, str(path))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return conn
    except sqlite3.Error as exc:
        raise translate(exc, path) from exc
