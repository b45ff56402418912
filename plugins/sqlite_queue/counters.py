"""The queue's third, optional face on SQLite: the sending limits' counters (``SharedCounters``).

Two tables, made on first use: ``counters`` (one row per key and bucket of its window) and
``counter_keys`` (what each key counts, for the Statistics page). A take reads and writes in
the worker's ``BEGIN IMMEDIATE`` transaction, so processes sharing the file never both fit
into the last slot. Written without the extra fsync (bookkeeping): a crash keeps them, a power
loss may forget the last few counts.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from mailpipe.core.queue import CounterRefusal, CounterRequest, CounterUse, SharedCounters

TABLES = (
    "CREATE TABLE IF NOT EXISTS counters (key TEXT NOT NULL, bucket INTEGER NOT NULL, count INTEGER NOT NULL, "
    "PRIMARY KEY (key, bucket)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS counter_keys (key TEXT PRIMARY KEY, label TEXT NOT NULL, max INTEGER NOT NULL, "
    "every REAL NOT NULL, last REAL NOT NULL)",
)
FORGET_AFTER = 86400.0  # a key unused this long after its window is forgotten
CLEANUP_EVERY = 3600.0


def _ensure(conn: sqlite3.Connection) -> None:
    for statement in TABLES:
        conn.execute(statement)


def _has_tables(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'counter_keys'").fetchone() is not None


def take(conn: sqlite3.Connection, requests: list[CounterRequest], now: float, cleanup: bool) -> CounterRefusal | None:
    """Count every request at ``now`` or none (the first refusal); runs inside the worker's transaction."""
    _ensure(conn)
    for r in requests:
        rows = conn.execute("SELECT bucket, count FROM counters WHERE key = ? AND bucket >= ?",
                            (r.key, r.first_bucket(now))).fetchall()
        refusal = r.refusal([(b, c) for b, c in rows], now)
        if refusal is not None:
            return refusal
    for r in requests:
        conn.execute("INSERT INTO counters (key, bucket, count) VALUES (?, ?, ?) "
                     "ON CONFLICT (key, bucket) DO UPDATE SET count = count + excluded.count",
                     (r.key, r.bucket(now), r.amount))
        conn.execute("DELETE FROM counters WHERE key = ? AND bucket < ?", (r.key, r.first_bucket(now)))
        conn.execute("INSERT INTO counter_keys (key, label, max, every, last) VALUES (?, ?, ?, ?, ?) "
                     "ON CONFLICT (key) DO UPDATE SET label = excluded.label, max = excluded.max, "
                     "every = excluded.every, last = excluded.last", (r.key, r.label, r.max, r.every, now))
    if cleanup:
        conn.execute("DELETE FROM counter_keys WHERE last < ? - every", (now - FORGET_AFTER,))
        conn.execute("DELETE FROM counters WHERE key NOT IN (SELECT key FROM counter_keys)")
    return None


def give_back(conn: sqlite3.Connection, requests: list[CounterRequest], taken_at: float) -> None:
    """Uncount requests taken at ``taken_at``."""
    if not _has_tables(conn):
        return
    for r in requests:
        conn.execute("UPDATE counters SET count = max(count - ?, 0) WHERE key = ? AND bucket = ?",
                     (r.amount, r.key, r.bucket(taken_at)))


def usage(conn: sqlite3.Connection, now: float) -> list[CounterUse]:
    """Every counter used within its window or the last day, by label."""
    if not _has_tables(conn):
        return []
    out = []
    keys = conn.execute("SELECT key, label, max, every, last FROM counter_keys WHERE last >= ? - every "
                        "ORDER BY label", (now - FORGET_AFTER,)).fetchall()
    for key, label, most, every, last in keys:
        first = CounterRequest(key, 0, most, every).first_bucket(now)
        used = conn.execute("SELECT coalesce(sum(count), 0) FROM counters WHERE key = ? AND bucket >= ?",
                            (key, first)).fetchone()[0]
        out.append(CounterUse(key, label, int(used), int(most), float(every), float(last)))
    return out


class SqliteCounters(SharedCounters):
    """``SharedCounters`` for ``SqliteQueue`` (a mixin: it runs its jobs through the queue's worker)."""

    _run: Callable[..., Awaitable[Any]]
    _counters_cleaned: float = 0.0

    async def take(self, requests: list[CounterRequest], now: float) -> CounterRefusal | None:
        """Called by the delivery plugins' sending limits before a transaction: count it, or say when it fits."""
        cleanup = now - self._counters_cleaned > CLEANUP_EVERY
        if cleanup:
            self._counters_cleaned = now
        return await self._run(partial(take, requests=list(requests), now=now, cleanup=cleanup),
                               write=True, durable=False)

    async def give_back(self, requests: list[CounterRequest], taken_at: float) -> None:
        """Called when a counted transaction sent nothing after all."""
        await self._run(partial(give_back, requests=list(requests), taken_at=taken_at), write=True, durable=False)

    async def usage(self, now: float) -> list[CounterUse]:
        """The console's Statistics page: each limit's use."""
        return await self._run(partial(usage, now=now))
