"""The collection ledger on PostgreSQL: which POP3 messages were collected, in the same transaction as each.

``CollectedMail`` is a mixin of ``PostgresQueue`` (the ``CollectionLedger`` face of
``core/queue.py``). Its table ``collected`` is created the first time a process uses it
(under an advisory lock, so nodes starting together do not race). A message and its mark
are one transaction; a mark that is already there (another node collected the same
message at the same moment) makes the insert of the message not happen at all.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from psycopg import AsyncConnection

from mailpipe.core.message import Message, RecipientState
from mailpipe.core.queue import CollectionLedger

from . import delivery
from .bodies import BodyStore

LEDGER_LOCK = 0x6D61696C636F6C6C  # "mailcoll": the advisory lock key taken while creating the table

TABLE = """CREATE TABLE IF NOT EXISTS collected (
    source text NOT NULL,
    uidl text NOT NULL,
    time double precision NOT NULL,
    message_id text,
    note text NOT NULL DEFAULT '',
    PRIMARY KEY (source, uidl))"""


async def ensure(conn: AsyncConnection[Any]) -> None:
    """Create the ``collected`` table if the database has none yet."""
    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (LEDGER_LOCK,))
    await conn.execute(TABLE)


async def mark(conn: AsyncConnection[Any], source: str, uidl: str, now: float, message_id: str | None,
               note: str) -> bool:
    """Insert a mark; False when the message was marked before (by this node or another)."""
    cur = await conn.execute(
        "INSERT INTO collected (source, uidl, time, message_id, note) VALUES (%s, %s, %s, %s, %s) "
        "ON CONFLICT DO NOTHING", (source, uidl, now, message_id, note))
    return cur.rowcount == 1


async def store(conn: AsyncConnection[Any], bodies: BodyStore, message: Message, data: bytes, source: str,
                uidl: str, now: float, node: str) -> bool:
    """The mark, then the message (recipients held where the collector held them), in one transaction."""
    if not await mark(conn, source, uidl, now, message.id, ""):
        return False
    await delivery.insert(conn, bodies, message, data, node)
    held = [r.address for r in message.recipients if r.state is RecipientState.HELD]
    if held:
        await conn.execute("UPDATE recipients SET state = 'held' WHERE message_id = %s AND address = ANY(%s)",
                           (message.id, held))
    return True


async def marks(conn: AsyncConnection[Any], source: str) -> dict[str, float]:
    """uidl -> time of one mailbox's marks."""
    cur = await conn.execute("SELECT uidl, time FROM collected WHERE source = %s", (source,))
    return {uidl: time for uidl, time in await cur.fetchall()}


async def forget(conn: AsyncConnection[Any], source: str, uidls: list[str]) -> int:
    """Delete these marks of one mailbox; how many went."""
    cur = await conn.execute("DELETE FROM collected WHERE source = %s AND uidl = ANY(%s)", (source, uidls))
    return cur.rowcount


class CollectedMail(CollectionLedger):
    """The ``CollectionLedger`` face of ``PostgresQueue``: each call one transaction through its pool."""

    _run: Callable[..., Awaitable[Any]]
    bodies: BodyStore
    node: str
    _ledger_ready: bool = False

    async def _ledger(self, job: Callable[[AsyncConnection[Any]], Awaitable[Any]], *, notify: bool = False) -> Any:
        if not self._ledger_ready:
            await self._run(ensure)
            self._ledger_ready = True
        return await self._run(job, notify=notify)

    async def store_collected(self, message: Message, data: bytes, source: str, uidl: str, now: float) -> bool:
        """Called by the collector: commit the message and its mark in one transaction (and tell the other nodes)."""
        return await self._ledger(partial(store, bodies=self.bodies, message=message, data=data, source=source,
                                          uidl=uidl, now=now, node=self.node), notify=True)

    async def mark_collected(self, source: str, uidl: str, now: float, note: str = "") -> bool:
        """Called by the collector for a message refused by ``accept``: remember it without queueing it."""
        return await self._ledger(partial(mark, source=source, uidl=uidl, now=now, message_id=None, note=note))

    async def collected(self, source: str) -> dict[str, float]:
        """Called by the collector before each run: the mailbox's marks."""
        return await self._ledger(partial(marks, source=source))

    async def forget_collected(self, source: str, uidls: list[str]) -> int:
        """Called by the collector: marks of messages gone from the server are no longer needed."""
        return await self._ledger(partial(forget, source=source, uidls=list(uidls)))
