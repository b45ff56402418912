"""The admin face's SQL on messages: show, list, retry, hold, release a hold, delete.

Each function is a job ``fn(conn, ...)`` that ``SqliteQueue`` runs on the worker thread.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from mailpipe.core.queue import MessageDetail, MessageSummary

from ..sql_queue.filters import summary_filter
from ..sql_queue.rows import tally
from .delivery import ACTIVE, MESSAGE_COLUMNS, message_from_row, recipients_of
from .logs import SQLITE, select_attempts


def get(conn: sqlite3.Connection, message_id: str) -> MessageDetail | None:
    """One message with all its recipients and attempts (no body, no loader); None if unknown."""
    row = conn.execute(f"SELECT {MESSAGE_COLUMNS}, client FROM messages WHERE id = ?", (message_id,)).fetchone()
    if row is None:
        return None
    recipients = recipients_of(conn, "WHERE message_id = ?", (message_id,))
    if not recipients:  # deleted: only its arrival is kept (for the statistics) until it is pruned
        return None
    attempts = select_attempts(conn, "WHERE message_id = ?", [message_id], 10_000)
    return MessageDetail(message_from_row(row[:6], recipients), attempts, json.loads(row[6] or "{}"))


def summaries(conn: sqlite3.Connection, state: str | None, limit: int) -> list[MessageSummary]:
    """Unfinished messages oldest first, or those with a recipient in ``state``, with counts by state."""
    where, params = summary_filter(SQLITE, state)
    rows = conn.execute(f"SELECT m.id, m.sender, m.created, m.size FROM messages m {where} ORDER BY m.created LIMIT ?",
                        [*params, limit]).fetchall()
    out = [MessageSummary(mid, sender, created, size) for mid, sender, created, size in rows]
    for summary in out:
        for st, n, nxt in conn.execute(
            "SELECT state, count(*), min(next_attempt) FROM recipients WHERE message_id = ? GROUP BY state",
            (summary.id,),
        ):
            tally(summary, st, n, nxt)
    return out


def _update(conn: sqlite3.Connection, sql: str, ids: list[str] | None, params: list[Any]) -> int:
    """Run ``sql`` (with ``{ids}`` standing for the message filter) for all messages or each of ``ids``."""
    if ids is None:
        return conn.execute(sql.replace("{ids}", "1"), params).rowcount
    return sum(conn.execute(sql.replace("{ids}", "message_id = ?"), [*params, mid]).rowcount for mid in ids)


def retry_now(conn: sqlite3.Connection, ids: list[str] | None, now: float) -> int:
    """Pending/deferred recipients of messages nobody holds a lease on are due at ``now``; how many."""
    return _update(
        conn,
        f"UPDATE recipients SET next_attempt = ? WHERE state IN {ACTIVE} AND {{ids}} AND message_id IN "
        "(SELECT id FROM messages WHERE lease_owner IS NULL)", ids, [now],
    )


def hold(conn: sqlite3.Connection, ids: list[str] | None) -> int:
    """Pending/deferred recipients of these messages are held; how many."""
    return _update(conn, f"UPDATE recipients SET state = 'held' WHERE state IN {ACTIVE} AND {{ids}}", ids, [])


def release_hold(conn: sqlite3.Connection, ids: list[str] | None, now: float) -> int:
    """Held recipients are due at ``now``: pending if never tried, deferred otherwise; how many."""
    return _update(
        conn,
        "UPDATE recipients SET state = CASE WHEN attempts = 0 THEN 'pending' ELSE 'deferred' END, "
        "next_attempt = ? WHERE state = 'held' AND {ids}", ids, [now],
    )


def delete(conn: sqlite3.Connection, ids: list[str], now: float) -> int:
    """Remove these messages' recipients and bodies; how many messages there were.

    The message row stays as a finished message (no recipients), so the statistics still
    count it as received; pruning removes it with the rest of the history.
    """
    count = 0
    for mid in ids:
        if conn.execute("SELECT 1 FROM recipients WHERE message_id = ? LIMIT 1", (mid,)).fetchone() is None:
            continue
        conn.execute("UPDATE messages SET done_at = coalesce(done_at, ?), lease_owner = NULL, lease_until = NULL "
                     "WHERE id = ?", (now, mid))
        conn.execute("DELETE FROM recipients WHERE message_id = ?", (mid,))
        conn.execute("DELETE FROM bodies WHERE message_id = ?", (mid,))
        count += 1
    return count
