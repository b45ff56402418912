"""The transfer face (``pipeline queue migrate``): export everything the file holds, import it idempotently.

The SQL jobs run on the worker thread like every other; an import batch is one write job,
so one transaction (the worker's savepoint: all of it or nothing). The file keeps no node
names: exports say "" and imports drop them.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mailpipe.core.events import Event
from mailpipe.core.queue import Attempt, MessageRecord, TransferCounts

from ..sql_queue.reads import SqlExport
from ..sql_queue.rows import message_record
from .delivery import owner_alive

_MESSAGE = "id, sender, created, size, client, mail_options, attributes, done_at, lease_owner, lease_until"
_ATTEMPT = ("time, message_id, recipient, outcome, route, remote_host, remote_addr, code, enhanced, text, duration, "
            "sender, action")


def counts(conn: sqlite3.Connection) -> TransferCounts:
    """What the file holds: messages, recipients of stored messages by state, log lines, bodies."""
    out = TransferCounts()
    out.messages, out.queued = conn.execute(
        "SELECT count(*), coalesce(sum(done_at IS NULL), 0) FROM messages").fetchone()
    out.recipients = dict(conn.execute(
        "SELECT state, count(*) FROM recipients WHERE message_id IN (SELECT id FROM messages) GROUP BY state"))
    out.attempts = conn.execute("SELECT count(*) FROM attempts").fetchone()[0]
    out.events = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    out.bodies, out.body_bytes = conn.execute(
        "SELECT count(*), coalesce(sum(length(data)), 0) FROM bodies WHERE message_id IN (SELECT id FROM messages)"
    ).fetchone()
    return out


def live_leases(conn: sqlite3.Connection, now: float) -> list[str]:
    """Lease owners whose lease still runs and whose process may be alive (``owner_alive``)."""
    rows = conn.execute("SELECT DISTINCT lease_owner FROM messages WHERE lease_owner IS NOT NULL AND lease_until > ?",
                        (now,)).fetchall()
    return [f"{owner} (holds leases)" for (owner,) in rows if owner_alive(owner)]


def message_page(conn: sqlite3.Connection, after: str, limit: int, now: float) -> list[MessageRecord]:
    """Up to ``limit`` messages by id after ``after``, with their recipients (no bodies)."""
    rows = conn.execute(f"SELECT {_MESSAGE} FROM messages WHERE id > ? ORDER BY id LIMIT ?", (after, limit)).fetchall()
    return [message_record(row, conn.execute(
        "SELECT address, state, attempts, next_attempt, last_reply FROM recipients WHERE message_id = ? ORDER BY id",
        (row[0],)), now) for row in rows]


def body_page(conn: sqlite3.Connection, ids: list[str]) -> dict[str, bytes]:
    """The stored bodies of these messages."""
    out: dict[str, bytes] = {}
    for mid in ids:
        row = conn.execute("SELECT data FROM bodies WHERE message_id = ?", (mid,)).fetchone()
        if row is not None:
            out[mid] = bytes(row[0])
    return out


def attempt_page(conn: sqlite3.Connection, after: int, limit: int) -> list[tuple[int, Attempt]]:
    """Up to ``limit`` message-log lines after row ``after``, with their row ids."""
    rows = conn.execute(f"SELECT id, {_ATTEMPT} FROM attempts WHERE id > ? ORDER BY id LIMIT ?",
                        (after, limit)).fetchall()
    return [(row[0], Attempt(*row[1:12], sender=row[12] or "", action=row[13] or "")) for row in rows]


def event_page(conn: sqlite3.Connection, after: int, limit: int) -> list[tuple[int, Event]]:
    """Up to ``limit`` events after row ``after``, with their row ids."""
    rows = conn.execute("SELECT id, time, kind, level, text, data FROM events WHERE id > ? ORDER BY id LIMIT ?",
                        (after, limit)).fetchall()
    return [(i, Event(t, k, x, lv, json.loads(d or "{}"))) for i, t, k, lv, x, d in rows]


def known(conn: sqlite3.Connection, ids: list[str]) -> set[str]:
    """Those of ``ids`` the file holds."""
    return {mid for mid in ids if conn.execute("SELECT 1 FROM messages WHERE id = ?", (mid,)).fetchone()}


def insert_messages(conn: sqlite3.Connection, records: list[MessageRecord]) -> list[str]:
    """Insert each message not yet here with its recipients and body; the ids inserted."""
    stored: list[str] = []
    for r in records:
        cur = conn.execute(
            "INSERT INTO messages (id, sender, created, size, client, mail_options, attributes, done_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
            (r.id, r.sender, r.created, r.size, json.dumps(r.client), json.dumps(r.mail_options),
             json.dumps(r.attributes, default=str), r.done_at),
        )
        if cur.rowcount != 1:
            continue
        conn.executemany(
            "INSERT INTO recipients (message_id, address, state, attempts, next_attempt, last_reply, updated) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(r.id, p.address, p.state.value, p.attempts, p.next_attempt, p.last_reply, r.done_at or r.created)
             for p in r.recipients],
        )
        if r.body is not None:
            conn.execute("INSERT INTO bodies (message_id, data) VALUES (?, ?)", (r.id, r.body))
        stored.append(r.id)
    return stored


def insert_attempts(conn: sqlite3.Connection, attempts: list[Attempt]) -> int:
    """Append each line not yet here (same message, recipient, time and outcome); how many.

    ``+time`` keeps SQLite on the message index: many lines may share a time (one attempt of
    many recipients), few share a message.
    """
    cur = conn.executemany(
        "INSERT INTO attempts (time, message_id, sender, recipient, outcome, route, remote_host, remote_addr, code, "
        "enhanced, text, duration, action) SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13 "
        "WHERE NOT EXISTS (SELECT 1 FROM attempts WHERE message_id = ?2 AND +time = ?1 AND recipient = ?4 "
        "AND outcome = ?5)",
        [(a.time, a.message_id, a.sender, a.recipient, a.outcome, a.route, a.remote_host, a.remote_addr, a.code,
          a.enhanced, a.text, a.duration, a.action) for a in attempts],
    )
    return cur.rowcount


def insert_events(conn: sqlite3.Connection, events: list[Event]) -> int:
    """Append each event not yet here (same time, kind and text); how many."""
    cur = conn.executemany(
        "INSERT INTO events (time, kind, level, text, data) SELECT ?1, ?2, ?3, ?4, ?5 "
        "WHERE NOT EXISTS (SELECT 1 FROM events WHERE time = ?1 AND kind = ?2 AND text = ?4)",
        [(e.time, e.kind, e.level, e.text, json.dumps(e.data, default=str)) for e in events],
    )
    return cur.rowcount


class SqliteTransfer(SqlExport):
    """``QueueTransfer`` for ``SqliteQueue`` (a mixin: it runs its jobs through the queue's worker)."""

    if TYPE_CHECKING:
        path: Path

        async def _run(self, fn: Callable[[sqlite3.Connection], Any], *, write: bool = False,
                       durable: bool = True) -> Any: ...

    @property
    def location(self) -> str:
        """The queue file's path."""
        return str(self.path)

    async def active_owners(self, now: float) -> list[str]:
        """Lease owners of this host whose process is alive, and owners elsewhere whose lease still runs."""
        return await self._run(partial(live_leases, now=now))

    async def read_bodies(self, message_ids: list[str]) -> dict[str, bytes]:
        """The stored bodies of these messages, in one job."""
        return await self._run(partial(body_page, ids=list(message_ids)))

    async def import_messages(self, records: list[MessageRecord]) -> list[str]:
        """One durable write job: the messages not yet here, with recipients and bodies."""
        return await self._run(partial(insert_messages, records=list(records)), write=True)

    async def import_attempts(self, attempts: list[Attempt]) -> int:
        """One durable write job: the message-log lines not yet here."""
        return await self._run(partial(insert_attempts, attempts=list(attempts)), write=True)

    async def import_events(self, events: list[Event]) -> int:
        """One durable write job: the events not yet here."""
        return await self._run(partial(insert_events, events=list(events)), write=True)
