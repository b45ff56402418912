"""The queue's third, optional face on PostgreSQL: the sending limits' counters (``SharedCounters``).

Two tables, made on first use under the migration lock: ``counters`` (one row per key and bucket
of its window) and ``counter_keys`` (what each key counts, for the Statistics page). A take
holds a transaction-level advisory lock per key (taken in key order: no deadlock) while it
reads and writes, so nodes sharing the database never both fit into the last slot.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from psycopg import AsyncConnection

from mailpipe.core.queue import CounterRefusal, CounterRequest, CounterUse, SharedCounters

from .schema import MIGRATION_LOCK

TABLES = (
    "CREATE TABLE IF NOT EXISTS counters (key text NOT NULL, bucket bigint NOT NULL, count integer NOT NULL, "
    "PRIMARY KEY (key, bucket))",
    "CREATE TABLE IF NOT EXISTS counter_keys (key text PRIMARY KEY, label text NOT NULL, max integer NOT NULL, "
    "every double precision NOT NULL, last double precision NOT NULL)",
)
FORGET_AFTER = 86400.0  # a key unused this long after its window is forgotten
CLEANUP_EVERY = 3600.0


async def ensure(conn: AsyncConnection[Any]) -> None:
    """Create the tables if they are missing (once per process; several nodes may start together)."""
    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
    for statement in TABLES:
        await conn.execute(statement)  # type: ignore[arg-type]


async def take(conn: AsyncConnection[Any], requests: list[CounterRequest], now: float,
               cleanup: bool) -> CounterRefusal | None:
    """Count every request at ``now`` or none (the first refusal), in one transaction."""
    for key in sorted({r.key for r in requests}):
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 7))", (key,))
    for r in requests:
        cur = await conn.execute("SELECT bucket, count FROM counters WHERE key = %s AND bucket >= %s",
                                 (r.key, r.first_bucket(now)))
        refusal = r.refusal([(int(b), int(c)) for b, c in await cur.fetchall()], now)
        if refusal is not None:
            return refusal
    for r in requests:
        await conn.execute("INSERT INTO counters (key, bucket, count) VALUES (%s, %s, %s) "
                           "ON CONFLICT (key, bucket) DO UPDATE SET count = counters.count + excluded.count",
                           (r.key, r.bucket(now), r.amount))
        await conn.execute("DELETE FROM counters WHERE key = %s AND bucket < %s", (r.key, r.first_bucket(now)))
        await conn.execute("INSERT INTO counter_keys (key, label, max, every, last) VALUES (%s, %s, %s, %s, %s) "
                           "ON CONFLICT (key) DO UPDATE SET label = excluded.label, max = excluded.max, "
                           "every = excluded.every, last = excluded.last", (r.key, r.label, r.max, r.every, now))
    if cleanup:
        await conn.execute("DELETE FROM counter_keys WHERE last < %s - every", (now - FORGET_AFTER,))
        await conn.execute("DELETE FROM counters c WHERE NOT EXISTS "
                           "(SELECT 1 FROM counter_keys k WHERE k.key = c.key)")
    return None


async def give_back(conn: AsyncConnection[Any], requests: list[CounterRequest], taken_at: float) -> None:
    """Uncount requests taken at ``taken_at``."""
    for r in requests:
        await conn.execute("UPDATE counters SET count = greatest(count - %s, 0) WHERE key = %s AND bucket = %s",
                           (r.amount, r.key, r.bucket(taken_at)))


async def usage(conn: AsyncConnection[Any], now: float) -> list[CounterUse]:
    """Every counter used within its window or the last day, by label."""
    cur = await conn.execute("SELECT key, label, max, every, last FROM counter_keys WHERE last >= %s - every "
                             "ORDER BY label", (now - FORGET_AFTER,))
    out = []
    for key, label, most, every, last in await cur.fetchall():
        first = CounterRequest(key, 0, most, every).first_bucket(now)
        row = await (await conn.execute("SELECT coalesce(sum(count), 0) FROM counters WHERE key = %s AND "
                                        "bucket >= %s", (key, first))).fetchone()
        out.append(CounterUse(key, label, int(row[0] if row else 0), int(most), float(every), float(last)))
    return out


class PostgresCounters(SharedCounters):
    """``SharedCounters`` for ``PostgresQueue`` (a mixin: it runs its jobs through the queue's transactions)."""

    _run: Callable[..., Awaitable[Any]]
    _counters_ready: bool = False
    _counters_cleaned: float = 0.0

    async def _counters(self, job: Callable[[AsyncConnection[Any]], Awaitable[Any]]) -> Any:
        async def run(conn: AsyncConnection[Any]) -> Any:
            if not self._counters_ready:
                await ensure(conn)
            return await job(conn)

        result = await self._run(run)
        self._counters_ready = True
        return result

    async def take(self, requests: list[CounterRequest], now: float) -> CounterRefusal | None:
        """Called by the delivery plugins' sending limits before a transaction: count it, or say when it fits."""
        cleanup = now - self._counters_cleaned > CLEANUP_EVERY
        if cleanup:
            self._counters_cleaned = now
        return await self._counters(partial(take, requests=list(requests), now=now, cleanup=cleanup))

    async def give_back(self, requests: list[CounterRequest], taken_at: float) -> None:
        """Called when a counted transaction sent nothing after all."""
        await self._counters(partial(give_back, requests=list(requests), taken_at=taken_at))

    async def usage(self, now: float) -> list[CounterUse]:
        """The console's Statistics page: each limit's use."""
        return await self._counters(partial(usage, now=now))
