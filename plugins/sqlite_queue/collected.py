"""The collection ledger on SQLite: which POP3 messages were collected, in the same file and transaction.

``CollectedMail`` is a mixin of ``SqliteQueue`` (the ``CollectionLedger`` face of
``core/queue.py``). Its table ``collected`` (one row per mailbox and UIDL) is created the
first time it is used, so a queue file that never collected is not touched. A message and
its mark are one job: one savepoint in one durable group commit.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from mailpipe.core.message import Message, RecipientState
from mailpipe.core.queue import CollectionLedger

from . import delivery

TABLE = """CREATE TABLE IF NOT EXISTS collected (
    source TEXT NOT NULL,
    uidl TEXT NOT NULL,
    time REAL NOT NULL,
    message_id TEXT,
    note TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (source, uidl))"""


def ensure(conn: sqlite3.Connection) -> None:
    """Create the ``collected`` table if this file has none yet."""
    conn.execute(TABLE)


def mark(conn: sqlite3.Connection, source: str, uidl: str, now: float, message_id: str | None, note: str) -> bool:
    """Insert a mark; False when the message was marked before."""
    cur = conn.execute("INSERT OR IGNORE INTO collected (source, uidl, time, message_id, note) VALUES (?, ?, ?, ?, ?)",
                       (source, uidl, now, message_id, note))
    return cur.rowcount == 1


def store(conn: sqlite3.Connection, message: Message, data: bytes, source: str, uidl: str, now: float) -> bool:
    """The mark, then the message (recipients held where the collector held them), in the caller's transaction."""
    if not mark(conn, source, uidl, now, message.id, ""):
        return False
    delivery.insert(conn, message, data)
    held = [r.address for r in message.recipients if r.state is RecipientState.HELD]
    if held:
        conn.executemany("UPDATE recipients SET state = 'held' WHERE message_id = ? AND address = ?",
                         [(message.id, address) for address in held])
    return True


def marks(conn: sqlite3.Connection, source: str) -> dict[str, float]:
    """uidl -> time of one mailbox's marks."""
    return dict(conn.execute("SELECT uidl, time FROM collected WHERE source = ?", (source,)).fetchall())


def forget(conn: sqlite3.Connection, source: str, uidls: list[str]) -> int:
    """Delete these marks of one mailbox; how many went."""
    return sum(conn.execute("DELETE FROM collected WHERE source = ? AND uidl = ?", (source, u)).rowcount
               for u in uidls)


class CollectedMail(CollectionLedger):
    """The ``CollectionLedger`` face of ``SqliteQueue``, run on its worker thread like every other job."""

    _run: Callable[..., Awaitable[Any]]
    _ledger_ready: bool = False

    async def _ledger(self, fn: Callable[[sqlite3.Connection], Any], *, write: bool) -> Any:
        if not self._ledger_ready:
            await self._run(ensure, write=True, durable=False)
            self._ledger_ready = True
        return await self._run(fn, write=write)

    async def store_collected(self, message: Message, data: bytes, source: str, uidl: str, now: float) -> bool:
        """Called by the collector: commit the message and its mark durably in one transaction."""
        return await self._ledger(partial(store, message=message, data=data, source=source, uidl=uidl, now=now),
                                  write=True)

    async def mark_collected(self, source: str, uidl: str, now: float, note: str = "") -> bool:
        """Called by the collector for a message refused by ``accept``: remember it without queueing it."""
        return await self._ledger(partial(mark, source=source, uidl=uidl, now=now, message_id=None, note=note),
                                  write=True)

    async def collected(self, source: str) -> dict[str, float]:
        """Called by the collector before each run: the mailbox's marks."""
        return await self._ledger(partial(marks, source=source), write=False)

    async def forget_collected(self, source: str, uidls: list[str]) -> int:
        """Called by the collector: marks of messages gone from the server are no longer needed."""
        return await self._ledger(partial(forget, source=source, uidls=list(uidls)), write=True)
