"""The logs' SQL: the event log, the message log (attempts), statistics and pruning by age.

Each function is a job ``fn(conn, ...)`` that ``SqliteQueue`` runs on the worker thread.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from mailpipe.core.events import Event
from mailpipe.core.queue import Attempt, QueueStats

from ..sql_queue.filters import Dialect, attempt_filter, levels_from
from .delivery import ACTIVE

SQLITE = Dialect(param="?", same_text="{column} = ? COLLATE NOCASE")


def insert_event(conn: sqlite3.Connection, event: Event) -> None:
    """Append one event to the event log."""
    conn.execute("INSERT INTO events (time, kind, level, text, data) VALUES (?,?,?,?,?)",
                 (event.time, event.kind, event.level, event.text, json.dumps(event.data, default=str)))


def select_events(conn: sqlite3.Connection, since: float | None, limit: int, kind: str | None,
                  level: str | None) -> list[Event]:
    """The newest ``limit`` events matching, oldest first; ``kind`` is a dotted prefix, ``level`` the lowest."""
    where, params = ["time >= ?"], [since or 0]
    if kind:
        where.append("(kind = ? OR kind LIKE ? ESCAPE '\\')")
        params += [kind, kind.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + ".%"]
    if level:
        shown = levels_from(level)
        where.append(f"level IN ({','.join('?' * len(shown))})")
        params += shown
    rows = conn.execute(
        f"SELECT time, kind, level, text, data FROM events WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?",
        [*params, limit],
    ).fetchall()
    return [Event(t, k, x, lv, json.loads(d or "{}")) for t, k, lv, x, d in reversed(rows)]


def select_attempts(conn: sqlite3.Connection, where: str, params: list[Any], limit: int) -> list[Attempt]:
    """The newest ``limit`` attempts matching ``where``, oldest first."""
    rows = conn.execute(
        "SELECT time, message_id, recipient, outcome, route, remote_host, remote_addr, code, enhanced, text, "
        f"duration, sender, coalesce(action, '') FROM attempts {where} ORDER BY id DESC LIMIT ?",
        [*params, limit],
    ).fetchall()
    return [Attempt(*r) for r in reversed(rows)]


def attempts(conn: sqlite3.Connection, limit: int, filters: dict[str, Any]) -> list[Attempt]:
    """The message log filtered by message, sender, recipient (any case), since, outcome (or action)."""
    where, params = attempt_filter(SQLITE, filters)
    return select_attempts(conn, where, params, limit)


def stats(conn: sqlite3.Connection, since: float, now: float) -> QueueStats:
    """Attempts by what they led to and messages received in [since, now]; the queue as it is."""
    st = QueueStats(since, now)
    for action, n in conn.execute(
        "SELECT coalesce(action, outcome), count(*) FROM attempts WHERE time >= ? AND time <= ? GROUP BY 1",
        (since, now),
    ):
        st.outcomes[action] = n
    st.received, st.notifications = conn.execute(
        "SELECT count(*), coalesce(sum(sender = ''), 0) FROM messages WHERE created >= ? AND created <= ?",
        (since, now),
    ).fetchone()
    st.queue_depth, st.oldest = conn.execute(
        "SELECT count(*), min(created) FROM messages WHERE done_at IS NULL"
    ).fetchone()
    for state, n in conn.execute(
        "SELECT state, count(*) FROM recipients WHERE message_id IN "
        "(SELECT id FROM messages WHERE done_at IS NULL) GROUP BY state"
    ):
        st.recipients[state] = n
    st.next_attempt = conn.execute(f"SELECT min(next_attempt) FROM recipients WHERE state IN {ACTIVE}").fetchone()[0]
    return st


def prune(conn: sqlite3.Connection, cutoff: float) -> dict[str, int]:
    """Delete attempts, events and finished messages from before ``cutoff``; how many of each."""
    out = {
        "attempts": conn.execute("DELETE FROM attempts WHERE time < ?", (cutoff,)).rowcount,
        "events": conn.execute("DELETE FROM events WHERE time < ?", (cutoff,)).rowcount,
    }
    old = [mid for (mid,) in conn.execute(
        "SELECT id FROM messages WHERE done_at IS NOT NULL AND done_at < ?", (cutoff,))]
    for mid in old:
        conn.execute("DELETE FROM recipients WHERE message_id = ?", (mid,))
        conn.execute("DELETE FROM bodies WHERE message_id = ?", (mid,))
        conn.execute("DELETE FROM messages WHERE id = ?", (mid,))
    out["messages"] = len(old)
    return out
