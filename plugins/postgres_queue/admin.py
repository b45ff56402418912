"""The admin face's SQL on messages: show, list, retry, hold, release a hold, delete.

Each function is a job ``fn(conn, ...)`` that ``PostgresQueue`` runs in one transaction. They
act on the whole queue, whichever node's configuration the command was given.
"""

from __future__ import annotations

import json
from typing import Any

from psycopg import AsyncConnection

from mailpipe.core.queue import MessageDetail, MessageSummary

from ..sql_queue.filters import summary_filter
from ..sql_queue.rows import tally
from .bodies import BodyStore
from .delivery import ACTIVE, MESSAGE_COLUMNS, message_from_row, recipients_of
from .logs import POSTGRES, select_attempts


async def get(conn: AsyncConnection[Any], message_id: str) -> MessageDetail | None:
    """One message with all its recipients and attempts (no body, no loader); None if unknown."""
    cur = await conn.execute(f"SELECT {MESSAGE_COLUMNS}, m.client FROM messages m WHERE m.id = %s", (message_id,))
    row = await cur.fetchone()
    if row is None:
        return None
    recipients = await recipients_of(conn, "WHERE message_id = %s", (message_id,))
    if not recipients:  # deleted: only its arrival is kept (for the statistics) until it is pruned
        return None
    attempts = await select_attempts(conn, "WHERE message_id = %s", [message_id], 10_000)
    return MessageDetail(message_from_row(row[:6], recipients), attempts, json.loads(row[6] or "{}"))


async def summaries(conn: AsyncConnection[Any], state: str | None, limit: int) -> list[MessageSummary]:
    """Unfinished messages oldest first, or those with a recipient in ``state``, with counts by state."""
    where, params = summary_filter(POSTGRES, state)
    cur = await conn.execute(
        f"SELECT m.id, m.sender, m.created, m.size FROM messages m {where} ORDER BY m.created, m.id LIMIT %s",
        [*params, limit])
    out = {mid: MessageSummary(mid, sender, created, size) for mid, sender, created, size in await cur.fetchall()}
    if not out:
        return []
    cur = await conn.execute(
        "SELECT message_id, state, count(*), min(next_attempt) FROM recipients WHERE message_id = ANY(%s) "
        "GROUP BY message_id, state", (list(out),))
    for mid, st, n, nxt in await cur.fetchall():
        tally(out[mid], st, n, nxt)
    return list(out.values())


def _filter(ids: list[str] | None) -> tuple[str, list[Any]]:
    """The message filter: all messages (None) or those in ``ids``."""
    return ("TRUE", []) if ids is None else ("message_id = ANY(%s)", [ids])


async def retry_now(conn: AsyncConnection[Any], ids: list[str] | None, now: float) -> int:
    """Pending/deferred recipients of messages nobody holds a lease on are due at ``now``; how many."""
    where, params = _filter(ids)
    cur = await conn.execute(
        f"UPDATE recipients SET next_attempt = %s WHERE state IN {ACTIVE} AND {where} AND message_id IN "
        "(SELECT id FROM messages WHERE lease_owner IS NULL AND done_at IS NULL)", [now, *params])
    return cur.rowcount


async def hold(conn: AsyncConnection[Any], ids: list[str] | None) -> int:
    """Pending/deferred recipients of these messages are held; how many."""
    where, params = _filter(ids)
    cur = await conn.execute(f"UPDATE recipients SET state = 'held' WHERE state IN {ACTIVE} AND {where}", params)
    return cur.rowcount


async def release_hold(conn: AsyncConnection[Any], ids: list[str] | None, now: float) -> int:
    """Held recipients are due at ``now``: pending if never tried, deferred otherwise; how many."""
    where, params = _filter(ids)
    cur = await conn.execute(
        "UPDATE recipients SET state = CASE WHEN attempts = 0 THEN 'pending' ELSE 'deferred' END, "
        f"next_attempt = %s WHERE state = 'held' AND {where}", [now, *params])
    return cur.rowcount


async def delete(conn: AsyncConnection[Any], ids: list[str], bodies: BodyStore, now: float) -> int:
    """Remove these messages' recipients and bodies; how many messages there were.

    The message row stays as a finished message (no recipients), so the statistics still
    count it as received; pruning removes it with the rest of the history.
    """
    if not ids:
        return 0
    cur = await conn.execute("SELECT DISTINCT message_id FROM recipients WHERE message_id = ANY(%s)", (ids,))
    found = [mid for (mid,) in await cur.fetchall()]
    if not found:
        return 0
    await conn.execute("UPDATE messages SET done_at = coalesce(done_at, %s), lease_owner = NULL, lease_until = NULL "
                       "WHERE id = ANY(%s)", (now, found))
    await conn.execute("DELETE FROM recipients WHERE message_id = ANY(%s)", (found,))
    await bodies.remove(conn, found)
    return len(found)
