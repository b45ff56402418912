"""``PostgresQueue``: the QueueBackend on a PostgreSQL database that several nodes share.

The class is the glue: it runs the SQL jobs of ``delivery`` (the delivery face), ``admin``
(the admin face), ``logs`` (event log, message log, statistics, pruning) and ``cluster``
(owners alive, takeover, chores) through ``database.Database`` (the pool, one transaction per
job, errors as queue errors), sends a NOTIFY with every change that makes mail due, and runs
two background tasks: the upkeep (buffered events written, this node's owners renewed, dead
owners' mail taken over) and, once the gateway subscribes, the ``listener``.

Connection failures: ``store`` and ``claim_due`` raise (the intake answers 451, the
scheduler tries again); ``record`` waits for the database to come back and then commits
once (a key tells a commit that went through from one that did not), so a delivery made
during an outage is neither lost nor sent again; ``release`` finishes in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar

from psycopg import AsyncConnection

from mailpipe.core.events import Event
from mailpipe.core.message import Message
from mailpipe.core.queue import QueueBackend, QueueError, RecipientUpdate
from mailpipe.core.tasks import cancel_and_wait

from ..sql_queue.claims import Claims
from ..sql_queue.reads import ReadJobs, SqlAdminReads
from . import admin, cluster, delivery, logs, transfer
from .bodies import BodyStore, ByteaBodies
from .collected import CollectedMail
from .counters import PostgresCounters
from .database import Database, Unreachable
from .kv import PostgresKeyValue
from .listener import Listener

__all__ = ["PostgresQueue"]

log = logging.getLogger("mailpipe.queue.postgres")
T = TypeVar("T")
Job = Callable[[AsyncConnection[Any]], Awaitable[T]]

UPKEEP_EVERY = 1.0  # seconds between upkeep rounds (buffered events are written then)
MAX_BUFFERED_EVENTS = 10_000  # while the database is away; the oldest go first
RETRY_BACKOFF = (0.5, 10.0)  # record/release waiting for the database: first and longest pause


class PostgresQueue(CollectedMail, PostgresKeyValue, PostgresCounters, SqlAdminReads, QueueBackend,
                    transfer.PostgresTransfer):
    """The shared queue. Made by the ``postgres`` plugin's ``open_queue``, one instance per process.

    ``lease``: seconds after which the claims of a node that stopped renewing go to the
    others; ``history_days``: how long ``prune`` keeps the logs and finished messages;
    ``node``: this gateway's ``hostname``, stored with its messages, attempts and events. The admin
    face's answers (``SqlAdminReads``) cover every node's messages and logs.
    """

    READS = ReadJobs(get=admin.get, summaries=admin.summaries, select_events=logs.select_events, attempts=logs.attempts,
                     stats=logs.stats, counts=transfer.counts, message_page=transfer.message_page,
                     attempt_page=transfer.attempt_page, event_page=transfer.event_page, known=transfer.known)

    def __init__(self, dsn: str, *, lease: float = 60.0, pool_size: int = 10, history_days: float = 30.0,
                 node: str = "", timeout: float = 10.0, bodies: BodyStore | None = None) -> None:
        self.db = Database(dsn, pool_size=pool_size, timeout=timeout, application_name=f"mailpipe {node}".strip())
        self.lease = lease
        self.history_seconds = history_days * 86400.0
        self.node = node
        self.bodies = bodies or ByteaBodies()
        self.token = secrets.token_hex(8)  # names this process in NOTIFY payloads
        self.listener: Listener | None = None
        self._wake: Callable[[], None] | None = None
        self._unsure_claims: set[str] = set()  # owners whose last claim failed: it may have committed
        self._owners: set[str] = set()  # lease owners (schedulers) of this process, renewed by the upkeep
        self._events: list[Event] = []
        self._claims = Claims(self.read_body)
        self._upkeep: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._open = False

    @property
    def where(self) -> str:
        """The database, as it may be shown (no password)."""
        return self.db.where

    @property
    def location(self) -> str:
        """The database, as the queue commands and the startup log line show it (no password)."""
        return self.db.where

    # -- plumbing -----------------------------------------------------------------------------

    async def _run(self, job: Job[T], *, notify: bool = False, pipeline: bool = False) -> T:
        """Run ``job`` in one transaction, writing the buffered events first (and a NOTIFY last).

        ``pipeline``: for jobs that only write (``store``), send all statements without
        waiting for each answer (psycopg's pipeline mode): one round trip before the COMMIT.
        """
        events, self._events = self._events, []

        async def statements(conn: AsyncConnection[Any]) -> T:
            await logs.insert_events(conn, events)
            result = await job(conn)
            if notify:
                await cluster.notify(conn, self.token)
            return result

        async def transaction(conn: AsyncConnection[Any]) -> T:
            if not pipeline:
                return await statements(conn)
            async with conn.pipeline():
                return await statements(conn)

        try:
            return await self.db.run(transaction)
        except QueueError:
            self._events[:0] = events
            del self._events[:-MAX_BUFFERED_EVENTS]
            raise

    async def _until_done(self, job: Job[T], *, notify: bool = False) -> T:
        """``_run``, waiting (with backoff) while the database is unreachable; other errors raise."""
        delay = RETRY_BACKOFF[0]
        while True:
            try:
                return await self._run(job, notify=notify)
            except Unreachable:
                if not self._open:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_BACKOFF[1])

    def _woken_here(self) -> None:
        """Mail became due through this process (a takeover, a release): wake our scheduler too."""
        if self._wake is not None:
            self._wake()

    # -- life ---------------------------------------------------------------------------------

    async def open(self) -> None:
        """Called by the gateway and the CLI: connect, create or migrate the schema, start the upkeep."""
        await self.db.open()
        self._open = True
        self._upkeep = asyncio.get_running_loop().create_task(self._upkeep_loop(), name="mailpipe-queue-upkeep")

    async def close(self) -> None:
        """Called at stop: stop listening and the upkeep, write the buffered events, close the pool."""
        self._open = False
        if self.listener is not None:
            await self.listener.stop()
        for task in [self._upkeep, *self._background]:
            await cancel_and_wait(task)
        self._upkeep = None
        if self._events and self.db.pool is not None:
            with contextlib.suppress(QueueError):
                await self._run(_nothing)
        if self._owners and self.db.pool is not None:
            # Stopped cleanly: nobody need wait ``lease`` to see this node gone (queue migrate, takeover).
            with contextlib.suppress(QueueError):
                await self._run(partial(cluster.retire, owners=sorted(self._owners)))
        await self.db.close()

    def subscribe(self, wake: Callable[[], None]) -> None:
        """Called once by the gateway at start: wake the scheduler when another node made mail due."""
        self._wake = wake
        if self.listener is None:
            self.listener = Listener(self.db, self.token, wake)
            self.listener.start()

    async def _upkeep_loop(self) -> None:
        """Write buffered events; every third of a lease, renew our owners and take over dead ones' mail."""
        every = max(0.2, self.lease / 3)
        next_round = time.monotonic() + every
        while True:
            await asyncio.sleep(min(UPKEEP_EVERY, every))
            try:
                if time.monotonic() >= next_round and self._owners:
                    next_round = time.monotonic() + every
                    await self._run(partial(cluster.heartbeat, owners=sorted(self._owners), node=self.node,
                                            lease=self.lease))
                    taken = await self._run(partial(cluster.take_over, keep=sorted(self._owners), now=time.time()))
                    if taken:
                        log.info("took over %d message(s) from lease owners that are gone", taken)
                        await self._run(partial(cluster.notify, token=self.token))
                        self._woken_here()
                elif self._events:
                    await self._run(_nothing)
            except QueueError:
                pass  # logged once per outage by the database; tried again next round

    # -- delivery face ------------------------------------------------------------------------

    async def store(self, message: Message, data: bytes) -> None:
        """Called by the intake: commit a new message; returns once COMMIT is acknowledged (synchronous)."""
        await self._run(partial(delivery.insert, bodies=self.bodies, message=message, data=data, node=self.node),
                        notify=True, pipeline=True)

    async def claim_due(self, now: float, limit: int, owner: str, lease_until: float) -> list[Message]:
        """Called by the scheduler: lease messages with due recipients to ``owner`` (SKIP LOCKED)."""
        fresh = owner not in self._owners
        unsure = owner in self._unsure_claims
        held = self._claims.held()

        async def job(conn: AsyncConnection[Any]) -> list[tuple[Message, str]]:
            if fresh:
                await cluster.heartbeat(conn, [owner], self.node, self.lease)
            if unsure:  # an earlier claim may have committed with its answer lost: give those back first
                given_back = await delivery.release_unheld(conn, owner, held, time.time())
                if given_back:
                    log.info("gave back %d message(s) claimed while the database connection was lost", given_back)
            return await delivery.claim(conn, self.bodies, now, limit, owner, lease_until)

        try:
            claimed = await self._run(job)
        except QueueError:
            self._unsure_claims.add(owner)
            raise
        self._unsure_claims.discard(owner)
        self._owners.add(owner)
        return self._claims.handed_out(claimed)

    async def renew(self, owner: str, message_ids: list[str], lease_until: float) -> None:
        """Called by the scheduler while deliveries run: extend ``owner``'s leases (and its claims)."""

        async def job(conn: AsyncConnection[Any]) -> None:
            await cluster.heartbeat(conn, [owner], self.node, self.lease)
            await delivery.move_lease_end(conn, list(message_ids), owner, lease_until, lease_until)

        await self._run(job)

    async def release(self, message_id: str, owner: str) -> None:
        """Called by the scheduler after each message: end the lease; unrecorded claims are due now.

        When the database is unreachable the release is finished in the background once it is back.
        """
        if self._claims.released(message_id):  # record() ended the message and its lease in one go
            return
        try:
            await self._release(message_id, owner)
        except Unreachable:
            if self._open:
                task = asyncio.get_running_loop().create_task(self._release(message_id, owner, wait=True))
                self._background.add(task)
                task.add_done_callback(self._background.discard)

    async def _release(self, message_id: str, owner: str, *, wait: bool = False) -> None:
        job = partial(delivery.move_lease_end, ids=[message_id], owner=owner, new_end=None, next_attempt=time.time())
        _, moved = await (self._until_done(job) if wait else self._run(job))
        if moved:  # cut short: the recipients are due again, maybe for another node
            await self._run(partial(cluster.notify, token=self.token))
            self._woken_here()

    async def recover(self, owner: str) -> int:
        """Called by the gateway at start: end leases that ran out or whose owner stopped renewing."""

        async def job(conn: AsyncConnection[Any]) -> int:
            await cluster.heartbeat(conn, [owner], self.node, self.lease)
            taken = await cluster.take_over(conn, [owner], time.time())
            if taken:
                await cluster.notify(conn, self.token)
            return taken

        taken = await self._run(job)
        self._owners.add(owner)
        return taken

    async def record(self, message: Message, updates: list[RecipientUpdate], now: float,
                     new_messages: list[tuple[Message, bytes]] | None = None) -> None:
        """Called by the core after an attempt: persist updates, attributes and reports in one transaction.

        While the database is unreachable this waits for it (the attempt happened: it must be
        recorded, not repeated); a commit whose acknowledgement was lost is not made twice.
        """
        attributes = self._claims.changed_attributes(message)
        job = partial(delivery.record, bodies=self.bodies, message=message, updates=list(updates), now=now,
                      new_messages=list(new_messages or []), attributes=attributes, key=uuid.uuid4().hex,
                      node=self.node)
        finished = await self._until_done(job, notify=bool(new_messages))
        self._claims.recorded(message.id, attributes, finished)

    async def next_due(self) -> float | None:
        """Called by the scheduler to sleep until the next due recipient (of any node)."""
        return await self._run(delivery.next_due)

    async def read_body(self, message_id: str) -> bytes:
        """The stored bytes (``await message.body()`` of a large message); ``QueueError`` if gone."""
        data = await self._run(partial(self.bodies.get, message_id=message_id))
        if data is None:
            raise QueueError(f"message {message_id} has no stored body")
        return data

    # -- admin face (show, list, events, log and stats: SqlAdminReads) -----------------------

    async def retry_now(self, message_ids: list[str] | None, now: float) -> int:
        """``pipeline queue retry``: pending/deferred recipients of unleased messages are due now, on every node."""
        return await self._changed(partial(admin.retry_now, ids=message_ids, now=now))

    async def hold(self, message_ids: list[str]) -> int:
        """``pipeline queue hold``: pending/deferred recipients are held, whichever node would deliver them."""
        return await self._run(partial(admin.hold, ids=message_ids))

    async def release_hold(self, message_ids: list[str], now: float) -> int:
        """``pipeline queue release``: held recipients are due now, on every node."""
        return await self._changed(partial(admin.release_hold, ids=message_ids, now=now))

    async def delete(self, message_ids: list[str]) -> int:
        """``pipeline queue delete``: remove messages undelivered; how many went."""
        return await self._run(partial(admin.delete, ids=list(message_ids), bodies=self.bodies, now=time.time()))

    async def _changed(self, job: Job[int]) -> int:
        """Run an admin change; when it made anything due, NOTIFY in the same transaction and wake here too."""

        async def with_notice(conn: AsyncConnection[Any]) -> int:
            count = await job(conn)
            if count:
                await cluster.notify(conn, self.token)
            return count

        count = await self._run(with_notice)
        if count:
            self._woken_here()
        return count

    # -- logs and chores ----------------------------------------------------------------------

    def add_event(self, event: Event) -> None:
        """Called by the event emitter: buffered, written with the next transaction (or within a second)."""
        if not self._open:
            return
        self._events.append(event)
        if len(self._events) > MAX_BUFFERED_EVENTS:
            del self._events[0]

    async def run_once(self, job: str, now: float, every: float) -> bool:
        """Housekeeping and alerts: true for one node per ``every`` seconds (the ``jobs`` table)."""
        return await self._run(partial(cluster.run_once, job=job, now=now, every=every, node=self.node))

    async def prune(self, now: float) -> dict[str, int]:
        """Called at start and hourly (by one node): delete history older than ``history_days``."""
        return await self._run(partial(logs.prune, cutoff=now - self.history_seconds, now=now))


async def _nothing(conn: AsyncConnection[Any]) -> None:
    """A transaction that only writes the buffered events."""
