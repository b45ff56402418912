"""The transfer face (``pipeline queue migrate``): export everything the database holds, import it idempotently.

Each page and each import batch is one transaction through the pool (``PostgresQueue._run``);
bodies are read and written through the queue's ``BodyStore``, a few MiB at a time (only
``counts`` reads the ``bodies`` table itself). Lease owners, chores and record keys
(``owners``, ``jobs``, ``records``) are bookkeeping of running nodes and are not moved.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from psycopg import AsyncConnection

from mailpipe.core.events import Event
from mailpipe.core.queue import Attempt, MessageRecord, TransferCounts

from ..sql_queue.reads import SqlExport
from ..sql_queue.rows import message_record
from .delivery import DB_NOW

if TYPE_CHECKING:
    from .bodies import BodyStore

T = TypeVar("T")

_MESSAGE = "id, sender, created, size, client, mail_options, attributes, done_at, lease_owner, lease_until, node"
_ATTEMPT = ("time, message_id, recipient, outcome, route, remote_host, remote_addr, code, enhanced, text, duration, "
            "sender, action, node")


async def counts(conn: AsyncConnection[Any]) -> TransferCounts:
    """What the database holds: messages, recipients by state, log lines, bodies (with their bytes)."""
    out = TransferCounts()
    row = await (await conn.execute("SELECT count(*), count(*) FILTER (WHERE done_at IS NULL) FROM messages")
                 ).fetchone()
    out.messages, out.queued = (int(row[0]), int(row[1])) if row else (0, 0)
    cur = await conn.execute("SELECT state, count(*) FROM recipients GROUP BY state")
    out.recipients = {state: int(n) for state, n in await cur.fetchall()}
    row = await (await conn.execute("SELECT (SELECT count(*) FROM attempts), (SELECT count(*) FROM events), "
                                    "count(*), coalesce(sum(octet_length(data)), 0) FROM bodies")).fetchone()
    if row:
        out.attempts, out.events, out.bodies, out.body_bytes = (int(v) for v in row)
    return out


async def live_owners(conn: AsyncConnection[Any]) -> list[str]:
    """Lease owners whose node renewed them within their lease (on the database's clock)."""
    cur = await conn.execute(
        f"SELECT owner, node, alive_until - {DB_NOW} FROM owners WHERE alive_until >= {DB_NOW} ORDER BY owner")
    return [f"{owner} on node {node or '?'} (alive for another {left:.0f}s unless it renews)"
            for owner, node, left in await cur.fetchall()]


async def message_page(conn: AsyncConnection[Any], after: str, limit: int, now: float) -> list[MessageRecord]:
    """Up to ``limit`` messages by id after ``after``, with their recipients (no bodies)."""
    cur = await conn.execute(f"SELECT {_MESSAGE} FROM messages WHERE id > %s ORDER BY id LIMIT %s", (after, limit))
    rows = await cur.fetchall()
    if not rows:
        return []
    cur = await conn.execute(
        "SELECT message_id, address, state, attempts, next_attempt, last_reply FROM recipients "
        "WHERE message_id = ANY(%s) ORDER BY id", ([row[0] for row in rows],))
    recipients: dict[str, list[tuple[Any, ...]]] = {}
    for mid, *recipient in await cur.fetchall():
        recipients.setdefault(mid, []).append(tuple(recipient))
    return [message_record(row[:10], recipients.get(row[0], []), now, node=row[10] or "") for row in rows]


async def attempt_page(conn: AsyncConnection[Any], after: int, limit: int) -> list[tuple[int, Attempt]]:
    """Up to ``limit`` message-log lines after row ``after``, with their row ids."""
    cur = await conn.execute(f"SELECT id, {_ATTEMPT} FROM attempts WHERE id > %s ORDER BY id LIMIT %s",
                             (after, limit))
    return [(row[0], Attempt(*row[1:])) for row in await cur.fetchall()]


async def event_page(conn: AsyncConnection[Any], after: int, limit: int) -> list[tuple[int, Event]]:
    """Up to ``limit`` events after row ``after``, with their row ids."""
    cur = await conn.execute("SELECT id, time, kind, level, text, data, node FROM events WHERE id > %s "
                             "ORDER BY id LIMIT %s", (after, limit))
    return [(i, Event(t, k, x, lv, json.loads(d or "{}"), node)) for i, t, k, lv, x, d, node in await cur.fetchall()]


async def known(conn: AsyncConnection[Any], ids: list[str]) -> set[str]:
    """Those of ``ids`` the database holds."""
    cur = await conn.execute("SELECT id FROM messages WHERE id = ANY(%s)", (ids,))
    return {mid for (mid,) in await cur.fetchall()}


async def insert_messages(conn: AsyncConnection[Any], bodies: BodyStore, records: list[MessageRecord]) -> list[str]:
    """Insert the messages not yet here, then their recipients and bodies; the ids inserted.

    Run in pipeline mode: a batch costs a few round trips, not a few per message.
    """
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO messages (id, sender, created, size, client, mail_options, attributes, node, done_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING RETURNING id",
            [(r.id, r.sender, r.created, r.size, json.dumps(r.client), json.dumps(r.mail_options),
              json.dumps(r.attributes, default=str), r.node, r.done_at) for r in records],
            returning=True,
        )
        new: set[str] = set()
        while True:
            new.update(mid for (mid,) in await cur.fetchall())
            if not cur.nextset():
                break
        fresh = [r for r in records if r.id in new]
        if fresh:
            await cur.executemany(
                "INSERT INTO recipients (message_id, address, state, attempts, next_attempt, last_reply, updated) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                [(r.id, p.address, p.state.value, p.attempts, p.next_attempt, p.last_reply, r.done_at or r.created)
                 for r in fresh for p in r.recipients],
            )
    for r in fresh:
        if r.body is not None:
            await bodies.put(conn, r.id, r.body)
    return [r.id for r in fresh]


async def insert_attempts(conn: AsyncConnection[Any], attempts: list[Attempt]) -> int:
    """Append each line not yet here (same message, recipient, time and outcome); how many.

    ``time + 0`` keeps the planner on the message index: many lines may share a time (one
    attempt of many recipients), few share a message.
    """
    async with conn.cursor() as cur:
        await cur.executemany(
            """INSERT INTO attempts (time, message_id, sender, recipient, outcome, route, remote_host, remote_addr,
                                     code, enhanced, text, duration, action, node)
               SELECT %(time)s, %(message_id)s, %(sender)s, %(recipient)s, %(outcome)s, %(route)s, %(remote_host)s,
                      %(remote_addr)s, %(code)s, %(enhanced)s, %(text)s, %(duration)s, %(action)s, %(node)s
               WHERE NOT EXISTS (SELECT 1 FROM attempts WHERE message_id = %(message_id)s AND time + 0 = %(time)s
                                 AND recipient = %(recipient)s AND outcome = %(outcome)s)""",
            [{**a.__dict__, "text": a.text or "", "route": a.route or "", "sender": a.sender or "",
              "action": a.action or "", "node": a.node or ""} for a in attempts],
        )
        return max(cur.rowcount, 0)


async def insert_events(conn: AsyncConnection[Any], events: list[Event]) -> int:
    """Append each event not yet here (same time, kind and text); how many."""
    async with conn.cursor() as cur:
        await cur.executemany(
            """INSERT INTO events (time, kind, level, text, data, node)
               SELECT %(time)s, %(kind)s, %(level)s, %(text)s, %(data)s, %(node)s
               WHERE NOT EXISTS (SELECT 1 FROM events WHERE time = %(time)s AND kind = %(kind)s
                                 AND text = %(text)s)""",
            [{"time": e.time, "kind": e.kind, "level": e.level, "text": e.text,
              "data": json.dumps(e.data, default=str), "node": e.node} for e in events],
        )
        return max(cur.rowcount, 0)


class PostgresTransfer(SqlExport):
    """``QueueTransfer`` for ``PostgresQueue`` (a mixin: it runs its jobs through the queue's pool)."""

    if TYPE_CHECKING:
        bodies: BodyStore

        @property
        def where(self) -> str: ...

        async def _run(self, job: Callable[[AsyncConnection[Any]], Awaitable[T]], *, notify: bool = False,
                       pipeline: bool = False) -> T: ...

    @property
    def location(self) -> str:
        """The DSN without its password."""
        return self.where

    async def active_owners(self, now: float) -> list[str]:
        """Lease owners (schedulers of running nodes) that renewed within their lease."""
        return await self._run(live_owners)

    async def read_bodies(self, message_ids: list[str]) -> dict[str, bytes]:
        """The stored bodies of these messages, through the ``BodyStore`` (one transaction)."""
        ids = list(message_ids)

        async def job(conn: AsyncConnection[Any]) -> dict[str, bytes]:
            if len(ids) == 1:
                data = await self.bodies.get(conn, ids[0])
                return {} if data is None else {ids[0]: data}
            return await self.bodies.get_small(conn, ids, self.BODY_BUDGET)

        return await self._run(job)

    async def import_messages(self, records: list[MessageRecord]) -> list[str]:
        """One transaction: the messages not yet here, with recipients and bodies (and a NOTIFY)."""
        return await self._run(partial(insert_messages, bodies=self.bodies, records=list(records)), notify=True,
                               pipeline=True)

    async def import_attempts(self, attempts: list[Attempt]) -> int:
        """One transaction: the message-log lines not yet here."""
        return await self._run(partial(insert_attempts, attempts=list(attempts)))

    async def import_events(self, events: list[Event]) -> int:
        """One transaction: the events not yet here."""
        return await self._run(partial(insert_events, events=list(events)))
