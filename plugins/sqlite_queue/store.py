"""``SqliteQueue``: the QueueBackend on one SQLite file (WAL, synchronous=FULL, group commit).

The class is the glue: it runs the SQL jobs of ``delivery`` (the delivery face), ``admin``
(the admin face) and ``logs`` (event log, message log, statistics, pruning) on the one
worker thread (``worker.DbWorker``) and turns SQLite errors into ``QueueError``. Messages
(``store``, ``record``) and an operator's changes (hold, retry, delete) wait for a durable
commit; leases, events and pruning are bookkeeping that start-up recovery rebuilds or can
do without, committed without the extra fsync.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from mailpipe.core.events import Event
from mailpipe.core.message import Message, Recipient
from mailpipe.core.queue import QueueBackend, QueueError, RecipientUpdate, StoreAndClaim

from ..sql_queue.claims import Claims
from ..sql_queue.reads import ReadJobs, SqlAdminReads
from . import admin, delivery, logs, transfer
from .collected import CollectedMail
from .connection import connect, translate
from .counters import SqliteCounters
from .kv import SqliteKeyValue
from .worker import DbWorker

__all__ = ["SqliteQueue"]


class SqliteQueue(CollectedMail, SqliteKeyValue, SqliteCounters, SqlAdminReads, StoreAndClaim, QueueBackend,
                  transfer.SqliteTransfer):
    """The embedded queue. All SQL runs on one worker thread; writes are group-committed.

    Made by the ``sqlite`` plugin's ``open_queue``; ``history_days`` is how long ``prune``
    keeps the logs and finished messages.
    """

    READS = ReadJobs(get=admin.get, summaries=admin.summaries, select_events=logs.select_events, attempts=logs.attempts,
                     stats=logs.stats, counts=transfer.counts, message_page=transfer.message_page,
                     attempt_page=transfer.attempt_page, event_page=transfer.event_page, known=transfer.known)

    def __init__(self, path: Path, *, busy_timeout: float = 10.0, history_days: float = 30.0) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self.history_seconds = history_days * 86400.0
        self._worker: DbWorker | None = None
        self._claims = Claims(self.read_body)

    @property
    def location(self) -> str:
        """The queue file (the queue commands and the startup log line name it)."""
        return str(self.path)

    async def exists(self) -> bool:
        """Whether the queue file is there (the queue commands refuse to create one)."""
        return self.path.exists()

    # -- plumbing -----------------------------------------------------------------------------

    async def _run(self, fn: Callable[[sqlite3.Connection], Any], *, write: bool = False,
                   durable: bool = True, hot: bool = False, patient: bool = False) -> Any:
        if self._worker is None:
            raise QueueError("queue is not open")
        try:
            return await self._worker.submit(fn, write=write, durable=durable, hot=hot, patient=patient)
        except sqlite3.Error as exc:
            raise translate(exc, self.path) from exc

    async def open(self) -> None:
        """Called by the gateway at start: open (create, upgrade) the file and start the worker."""
        worker = DbWorker(lambda: connect(self.path, self.busy_timeout))
        worker.start()
        self._worker = worker

    async def close(self) -> None:
        """Called by the gateway at stop: finish the queued jobs and close the file."""
        if self._worker is not None:
            self._worker.stop()
            self._worker = None

    # -- delivery face ------------------------------------------------------------------------

    async def store(self, message: Message, data: bytes) -> None:
        """Called by the intake: commit a new message durably (``QueueFull`` when the disk is full)."""
        await self._run(partial(delivery.insert, message=message, data=data), write=True)

    async def store_claimed(self, message: Message, data: bytes, owner: str, lease_until: float) -> Message:
        """Called by the intake's hand-off: commit a new message durably, leased to ``owner`` (its scheduler)."""
        await self._run(partial(delivery.insert, message=message, data=data, owner=owner, lease_until=lease_until),
                        write=True)
        claimed = Message(id=message.id, sender=message.sender, created=message.created, size=len(data),
                          recipients=[Recipient(address=r.address, next_attempt=message.created)
                                      for r in message.recipients],
                          mail_options=list(message.mail_options), attributes=dict(message.attributes))
        if len(data) <= delivery.INLINE_BODY_LIMIT:
            claimed.set_body(data)
        return self._claims.handed_out([(claimed, json.dumps(message.attributes, default=str))])[0]

    async def claim_due(self, now: float, limit: int, owner: str, lease_until: float) -> list[Message]:
        """Called by the scheduler: lease messages with due recipients to ``owner``.

        A read looks first whether anything is due at all (the partial index ``recipients_due``): a
        scheduler woken by a finished delivery then costs no write transaction when nothing waits.
        """
        due = await self._run(delivery.next_due, hot=True)
        if due is None or due > now:
            return []
        claimed = await self._run(partial(delivery.claim, now=now, limit=limit, owner=owner,
                                          lease_until=lease_until), write=True, durable=False)
        return self._claims.handed_out(claimed)

    async def renew(self, owner: str, message_ids: list[str], lease_until: float) -> None:
        """Called by the scheduler while deliveries run: extend ``owner``'s leases (and its claims)."""
        await self._run(partial(delivery.renew, owner=owner, message_ids=list(message_ids),
                                lease_until=lease_until), write=True, durable=False)

    async def release(self, message_id: str, owner: str) -> None:
        """Called by the scheduler after each message: end the lease; unrecorded claims are due now."""
        if self._claims.released(message_id):  # record() ended the message and its lease in one go
            return
        await self._run(partial(delivery.release, message_id=message_id, owner=owner, now=time.time()),
                        write=True, durable=False)

    async def recover(self, owner: str) -> int:
        """Called by the gateway at start: end leases that ran out or whose process is dead."""
        return await self._run(partial(delivery.recover, owner=owner, now=time.time()), write=True, durable=False)

    async def record(self, message: Message, updates: list[RecipientUpdate], now: float,
                     new_messages: list[tuple[Message, bytes]] | None = None) -> None:
        """Called by the core after an attempt: persist the updates, attributes and reports in one transaction."""
        attributes = self._claims.changed_attributes(message)
        finished = await self._run(partial(delivery.record, message=message, updates=list(updates), now=now,
                                           new_messages=list(new_messages or []), attributes=attributes),
                                   write=True, patient=True)
        self._claims.recorded(message.id, attributes, finished)

    async def next_due(self) -> float | None:
        """Called by the scheduler to sleep until the next due recipient."""
        return await self._run(delivery.next_due, hot=True)

    async def read_body(self, message_id: str) -> bytes:
        """The stored bytes (``await message.body()`` of a large message); ``QueueError`` if gone."""
        return await self._run(partial(delivery.read_body, message_id=message_id), hot=True)

    # -- admin face (show, list, events, log and stats: SqlAdminReads) -----------------------

    async def retry_now(self, message_ids: list[str] | None, now: float) -> int:
        """``pipeline queue retry``: pending/deferred recipients of unleased messages are due at ``now``."""
        return await self._run(partial(admin.retry_now, ids=message_ids, now=now), write=True)

    async def hold(self, message_ids: list[str]) -> int:
        """``pipeline queue hold``: pending/deferred recipients are held."""
        return await self._run(partial(admin.hold, ids=message_ids), write=True)

    async def release_hold(self, message_ids: list[str], now: float) -> int:
        """``pipeline queue release``: held recipients are due at ``now``."""
        return await self._run(partial(admin.release_hold, ids=message_ids, now=now), write=True)

    async def delete(self, message_ids: list[str]) -> int:
        """``pipeline queue delete``: remove messages undelivered; how many went."""
        return await self._run(partial(admin.delete, ids=message_ids, now=time.time()), write=True)

    # -- logs ---------------------------------------------------------------------------------

    def add_event(self, event: Event) -> None:
        """Called by the event emitter: buffered, written with the next commit; never raises."""
        if self._worker is None:
            return
        self._worker.submit_nowait(partial(logs.insert_event, event=event))

    async def prune(self, now: float) -> dict[str, int]:
        """Called at start and hourly: delete attempts, events and finished messages older than ``history_days``."""
        return await self._run(partial(logs.prune, cutoff=now - self.history_seconds), write=True, durable=False)
