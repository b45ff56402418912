"""The logs' SQL: the event log, the message log (attempts), statistics and pruning by age.

Each function is a job ``fn(conn, ...)`` that ``PostgresQueue`` runs in one transaction.
Events and attempts carry the ``node`` that made them.
"""

from __future__ import annotations

import json
from typing import Any

from psycopg import AsyncConnection

from mailpipe.core.events import Event
from mailpipe.core.queue import Attempt, QueueStats

from ..sql_queue.filters import Dialect, attempt_filter, levels_from
from .delivery import ACTIVE

POSTGRES = Dialect(param="%s", same_text="lower({column}) = lower(%s)")
BOOKKEEPING_DAYS = 1.0


async def insert_events(conn: AsyncConnection[Any], events: list[Event]) -> None:
    """Append events to the event log."""
    if not events:
        return
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO events (time, kind, level, text, data, node) VALUES (%s, %s, %s, %s, %s, %s)",
            [(e.time, e.kind, e.level, e.text, json.dumps(e.data, default=str), e.node) for e in events],
        )


async def select_events(conn: AsyncConnection[Any], since: float | None, limit: int, kind: str | None,
                        level: str | None) -> list[Event]:
    """The newest ``limit`` events matching, oldest first; ``kind`` is a dotted prefix, ``level`` the lowest."""
    where, params = ["time >= %s"], [since or 0]
    if kind:
        where.append("(kind = %s OR starts_with(kind, %s))")
        params += [kind, kind + "."]
    if level:
        where.append("level = ANY(%s)")
        params.append(levels_from(level))
    cur = await conn.execute(
        f"SELECT time, kind, level, text, data, node FROM events WHERE {' AND '.join(where)} "
        "ORDER BY id DESC LIMIT %s", [*params, limit])
    rows = await cur.fetchall()
    return [Event(t, k, x, lv, json.loads(d or "{}"), node) for t, k, lv, x, d, node in reversed(rows)]


async def select_attempts(conn: AsyncConnection[Any], where: str, params: list[Any], limit: int) -> list[Attempt]:
    """The newest ``limit`` attempts matching ``where``, oldest first."""
    cur = await conn.execute(
        "SELECT time, message_id, recipient, outcome, route, remote_host, remote_addr, code, enhanced, text, "
        f"duration, sender, action, node FROM attempts {where} ORDER BY id DESC LIMIT %s", [*params, limit])
    return [Attempt(*row) for row in reversed(await cur.fetchall())]


async def attempts(conn: AsyncConnection[Any], limit: int, filters: dict[str, Any]) -> list[Attempt]:
    """The message log filtered by message, sender, recipient (any case), since, outcome (or action)."""
    where, params = attempt_filter(POSTGRES, filters)
    return await select_attempts(conn, where, params, limit)


async def _one(conn: AsyncConnection[Any], sql: str, params: tuple[Any, ...] = ()) -> tuple[Any, ...]:
    row = await (await conn.execute(sql, params)).fetchone()
    assert row is not None
    return tuple(row)


async def stats(conn: AsyncConnection[Any], since: float, now: float) -> QueueStats:
    """Attempts by what they led to and messages received in [since, now]; the queue as it is."""
    st = QueueStats(since, now)
    cur = await conn.execute(
        "SELECT coalesce(nullif(action, ''), outcome), count(*) FROM attempts WHERE time >= %s AND time <= %s "
        "GROUP BY 1", (since, now))
    st.outcomes = {action: n for action, n in await cur.fetchall()}
    st.received, st.notifications = await _one(
        conn, "SELECT count(*), count(*) FILTER (WHERE sender = '') FROM messages WHERE created >= %s "
        "AND created <= %s", (since, now))
    st.queue_depth, st.oldest = await _one(conn, "SELECT count(*), min(created) FROM messages WHERE done_at IS NULL")
    cur = await conn.execute(
        "SELECT r.state, count(*) FROM recipients r JOIN messages m ON m.id = r.message_id "
        "WHERE m.done_at IS NULL GROUP BY r.state")
    st.recipients = {state: n for state, n in await cur.fetchall()}
    (st.next_attempt,) = await _one(conn, f"SELECT min(next_attempt) FROM recipients WHERE state IN {ACTIVE}")
    return st


async def prune(conn: AsyncConnection[Any], cutoff: float, now: float) -> dict[str, int]:
    """Delete attempts, events and finished messages from before ``cutoff``; how many of each.

    Also forgets record keys older than a day and lease owners gone that long without a lease
    (bookkeeping, not counted).
    """
    out = {
        "attempts": (await conn.execute("DELETE FROM attempts WHERE time < %s", (cutoff,))).rowcount,
        "events": (await conn.execute("DELETE FROM events WHERE time < %s", (cutoff,))).rowcount,
        "messages": (await conn.execute(
            "DELETE FROM messages WHERE done_at IS NOT NULL AND done_at < %s", (cutoff,))).rowcount,
    }
    await conn.execute("DELETE FROM records WHERE time < %s", (now - BOOKKEEPING_DAYS * 86400,))
    await conn.execute("DELETE FROM owners WHERE alive_until < %s AND NOT EXISTS "
                       "(SELECT 1 FROM messages m WHERE m.lease_owner = owners.owner)",
                       (now - BOOKKEEPING_DAYS * 86400,))
    return out
