"""One queue file per worker: ``queue.sqlite3`` for worker 1, ``queue-2.sqlite3`` for worker 2, ...

SQLite lets one process write a file at a time; two processes committing to one file wait
for each other's lock (measured: a second process lost its whole gain). So each worker of a
supervised ``pipeline serve`` (``core/workers``) stores the mail it accepts in a file of its
own, delivers from it, and recovers it when it restarts. ``ShardedQueue`` puts the files
together behind the one queue interface:

- the **delivery face** works on the worker's own file, plus the files of workers that no
  longer run (``workers`` was lowered: worker ``k`` adopts file ``j > N`` when
  ``(j - 1) % N == k - 1``), so no mail is left behind; a claimed message is recorded and
  released in the file it came from;
- the **admin face** (``pipeline queue``, ``log``, ``events``, ``stats``, the console, alerts,
  metrics) reads and changes every file: lists and logs are merged by time, counts summed;
- chores that run once (``run_once``: pruning, alert checks, TLS reports, POP3 collection)
  run in worker 1, whose ``prune`` prunes every file;
- the key-value face (plugins' small shared values) lives in worker 1's file, opened by the
  others when first asked; the collection ledger in the worker's own file (only worker 1
  collects);
- the transfer face (``pipeline queue migrate``) exports every file and imports into the first.

With one file only (one process, or the administration commands on a single-process queue)
``open_queue`` returns the plain ``SqliteQueue``: nothing changes for a single process.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from mailpipe.core.events import Event
from mailpipe.core.message import Message
from mailpipe.core.queue import (
    Attempt,
    CollectionLedger,
    CounterRefusal,
    CounterRequest,
    CounterUse,
    KeyValueStore,
    MessageDetail,
    MessageRecord,
    MessageSummary,
    QueueBackend,
    QueueStats,
    QueueTransfer,
    RecipientUpdate,
    SharedCounters,
    StoreAndClaim,
    TransferCounts,
)
from mailpipe.core.workers.slot import WorkerSlot

from .store import SqliteQueue

T = TypeVar("T")
KEY_BITS = 40
"""Log keys of the transfer face: ``file number << KEY_BITS | row id`` (one key space over all files)."""


def shard_path(base: Path, index: int) -> Path:
    """Worker ``index``'s queue file: ``base`` itself for worker 1, ``<stem>-<index><suffix>`` for the others."""
    return base if index == 1 else base.with_name(f"{base.stem}-{index}{base.suffix}")


def existing_shards(base: Path) -> dict[int, Path]:
    """Every queue file of ``base`` that exists, by worker number."""
    found = {1: base} if base.exists() else {}
    pattern = re.compile(re.escape(base.stem) + r"-([0-9]+)" + re.escape(base.suffix) + "$")
    if base.parent.is_dir():
        for path in base.parent.iterdir():
            m = pattern.match(path.name)
            if m and int(m.group(1)) >= 2 and str(int(m.group(1))) == m.group(1):
                found[int(m.group(1))] = path
    return dict(sorted(found.items()))


def delivered_by(slot: WorkerSlot, files: Iterable[int]) -> list[int]:
    """The files ``slot`` delivers from: its own, and those of workers beyond the count it belongs to."""
    return [slot.index, *(j for j in sorted(files) if j > slot.count and (j - 1) % slot.count == slot.index - 1)]


def open_queue(base: Path, slot: WorkerSlot, make: Callable[[Path], SqliteQueue]) -> QueueBackend:
    """The queue for worker ``slot`` (administration commands: worker 1 of 1) on the files of ``base``.

    The plain ``SqliteQueue`` of ``base`` when it is the only file involved, else a ``ShardedQueue``.
    """
    files = existing_shards(base)
    delivering = delivered_by(slot, files)
    # Worker 1 reads every worker's file, also those the others have not made yet (it makes them).
    reading = sorted({*delivering, *files, *range(1, slot.count + 1)}) if slot.primary else delivering
    if reading == [1]:
        return make(base)
    return ShardedQueue({i: make(shard_path(base, i)) for i in reading}, own=slot.index, delivering=delivering,
                        primary=slot.primary, kv=lambda: make(base))


def _merged(lists: Iterable[list[T]], key: Callable[[T], Any], limit: int, newest: bool) -> list[T]:
    """The lists merged in ``key`` order, cut to ``limit``: the newest ones (``newest``) or the first ones."""
    rows = sorted((row for rows in lists for row in rows), key=key)
    return rows[-limit:] if newest and limit else rows[:limit]


class ShardedQueue(CollectionLedger, KeyValueStore, SharedCounters, StoreAndClaim, QueueBackend, QueueTransfer):
    """The queue of one worker over the worker files (see the module's text); ``shards`` by worker number.

    ``own`` is where new mail and events go, ``delivering`` the files this worker claims from,
    ``primary`` whether chores that run once run here; ``kv`` makes worker 1's file for the
    key-value face and the sending limits' counters (both shared by every worker) when this
    worker does not read it anyway.
    """

    def __init__(self, shards: dict[int, SqliteQueue], *, own: int, delivering: list[int], primary: bool,
                 kv: Callable[[], SqliteQueue]) -> None:
        self.shards = shards
        self.own = own
        self.delivering = [i for i in delivering if i in shards]
        self.primary = primary
        self._make_kv = kv
        self._kv: SqliteQueue | None = shards.get(1)
        self._kv_opened = False
        self._kv_lock = asyncio.Lock()
        self._claimed: dict[str, int] = {}  # message id -> the file it was claimed from

    # -- plumbing -------------------------------------------------------------------------------

    @property
    def location(self) -> str:
        """The files, for people: ``/var/lib/mailpipe/queue.sqlite3 (+ queue-2.sqlite3)``."""
        first, *rest = self.shards.values()
        return str(first.path) + (f" (+ {', '.join(q.path.name for q in rest)})" if rest else "")

    async def exists(self) -> bool:
        """Whether any of the files is there."""
        return any(q.path.exists() for q in self.shards.values())

    async def open(self) -> None:
        """Open every file (the own one first: it is created if new); none stays open when one fails."""
        opened: list[SqliteQueue] = []
        try:
            for index in sorted(self.shards, key=lambda i: i != self.own):
                await self.shards[index].open()
                opened.append(self.shards[index])
        except BaseException:
            for queue in opened:
                await queue.close()
            raise

    async def close(self) -> None:
        """Close every file."""
        for queue in self.shards.values():
            await queue.close()
        if self._kv is not None and self._kv_opened:
            await self._kv.close()
            self._kv_opened = False

    async def _each(self, call: Callable[[SqliteQueue], Awaitable[T]], indexes: Iterable[int] | None = None) -> list[T]:
        """``call`` on each file (all, or ``indexes``), at once; the answers in file order."""
        chosen = [self.shards[i] for i in (self.shards if indexes is None else indexes)]
        return list(await asyncio.gather(*(call(q) for q in chosen)))

    def _home(self, message_id: str) -> SqliteQueue:
        return self.shards[self._claimed.get(message_id, self.own)]

    # -- delivery face --------------------------------------------------------------------------

    async def store(self, message: Message, data: bytes) -> None:
        """Called by the intake: commit a new message durably in this worker's file."""
        await self.shards[self.own].store(message, data)

    async def store_claimed(self, message: Message, data: bytes, owner: str, lease_until: float) -> Message:
        """Called by the intake's hand-off: commit in this worker's file, claimed by its scheduler."""
        claimed = await self.shards[self.own].store_claimed(message, data, owner, lease_until)
        self._claimed[claimed.id] = self.own
        return claimed

    async def claim_due(self, now: float, limit: int, owner: str, lease_until: float) -> list[Message]:
        """Called by the scheduler: due messages from this worker's files, its own first."""
        claimed: list[Message] = []
        for index in self.delivering:
            if len(claimed) >= limit:
                break
            found = await self.shards[index].claim_due(now, limit - len(claimed), owner, lease_until)
            for message in found:
                self._claimed[message.id] = index
            claimed += found
        return claimed

    async def renew(self, owner: str, message_ids: list[str], lease_until: float) -> None:
        """Called by the scheduler: extend the leases, each in its message's file."""
        by_file: dict[int, list[str]] = {}
        for mid in message_ids:
            by_file.setdefault(self._claimed.get(mid, self.own), []).append(mid)
        for index, ids in by_file.items():
            await self.shards[index].renew(owner, ids, lease_until)

    async def release(self, message_id: str, owner: str) -> None:
        """Called by the scheduler after each message: end the lease in the message's file."""
        home = self._home(message_id)
        self._claimed.pop(message_id, None)
        await home.release(message_id, owner)

    async def recover(self, owner: str) -> int:
        """Called by the gateway at start: recover every file this worker delivers from."""
        return sum(await self._each(lambda q: q.recover(owner), self.delivering))

    async def record(self, message: Message, updates: list[RecipientUpdate], now: float,
                     new_messages: list[tuple[Message, bytes]] | None = None) -> None:
        """Called after an attempt: one transaction in the message's file (its reports go there too)."""
        await self._home(message.id).record(message, updates, now, new_messages)

    async def next_due(self) -> float | None:
        """The earliest due time over the files this worker delivers from."""
        times = [t for t in await self._each(lambda q: q.next_due(), self.delivering) if t is not None]
        return min(times, default=None)

    async def read_body(self, message_id: str) -> bytes:
        """The stored bytes of a message, from its file."""
        if message_id in self._claimed:
            return await self._home(message_id).read_body(message_id)
        last: Exception | None = None
        for queue in self.shards.values():
            try:
                return await queue.read_body(message_id)
            except Exception as exc:  # noqa: BLE001 - not in this file: try the next
                last = exc
        assert last is not None
        raise last

    # -- admin face -----------------------------------------------------------------------------

    async def get(self, message_id: str) -> MessageDetail | None:
        """``pipeline queue show``: the message from whichever file holds it."""
        for found in await self._each(lambda q: q.get(message_id)):
            if found is not None:
                return found
        return None

    async def list(self, *, state: str | None = None, limit: int = 1000) -> list[MessageSummary]:
        """``pipeline queue list``: every file's messages, oldest first."""
        return _merged(await self._each(lambda q: q.list(state=state, limit=limit)), lambda m: m.created, limit,
                       newest=False)

    async def retry_now(self, message_ids: list[str] | None, now: float) -> int:
        """``pipeline queue retry``, in every file."""
        return sum(await self._each(lambda q: q.retry_now(message_ids, now)))

    async def delete(self, message_ids: list[str]) -> int:
        """``pipeline queue delete``, in every file."""
        return sum(await self._each(lambda q: q.delete(message_ids)))

    async def hold(self, message_ids: list[str]) -> int:
        """``pipeline queue hold``, in every file."""
        return sum(await self._each(lambda q: q.hold(message_ids)))

    async def release_hold(self, message_ids: list[str], now: float) -> int:
        """``pipeline queue release``, in every file."""
        return sum(await self._each(lambda q: q.release_hold(message_ids, now)))

    def add_event(self, event: Event) -> None:
        """Called by the event emitter: kept in this worker's file."""
        self.shards[self.own].add_event(event)

    async def events(self, *, since: float | None = None, limit: int = 200, kind: str | None = None,
                     level: str | None = None) -> list[Event]:
        """``pipeline events``: the newest ``limit`` of every file's events, oldest first."""
        found = await self._each(lambda q: q.events(since=since, limit=limit, kind=kind, level=level))
        return _merged(found, lambda e: e.time, limit, newest=True)

    async def attempts(self, *, limit: int = 200, **filters: Any) -> list[Attempt]:
        """``pipeline log``: the newest ``limit`` of every file's attempts, oldest first."""
        found = await self._each(lambda q: q.attempts(limit=limit, **filters))
        return _merged(found, lambda a: a.time, limit, newest=True)

    async def stats(self, *, since: float, now: float) -> QueueStats:
        """``pipeline stats`` and the metrics: every file's counts added up."""
        out = QueueStats(since, now)
        for st in await self._each(lambda q: q.stats(since=since, now=now)):
            for key, n in st.outcomes.items():
                out.outcomes[key] = out.outcomes.get(key, 0) + n
            for key, n in st.recipients.items():
                out.recipients[key] = out.recipients.get(key, 0) + n
            out.received += st.received
            out.notifications += st.notifications
            out.queue_depth += st.queue_depth
            out.oldest = min(t for t in (out.oldest, st.oldest) if t is not None) if st.oldest else out.oldest
            out.next_attempt = (min(t for t in (out.next_attempt, st.next_attempt) if t is not None)
                                if st.next_attempt else out.next_attempt)
        return out

    async def run_once(self, job: str, now: float, every: float) -> bool:
        """Chores that run once for the whole gateway (pruning, alerts, reports, collection) run in worker 1."""
        return self.primary

    async def prune(self, now: float) -> dict[str, int]:
        """Called hourly in worker 1: prune every file; how many rows of each kind went."""
        out: dict[str, int] = {}
        for removed in await self._each(lambda q: q.prune(now)):
            for key, n in removed.items():
                out[key] = out.get(key, 0) + n
        return out

    # -- key-value face (worker 1's file) ----------------------------------------------------------

    async def _kv_queue(self) -> SqliteQueue:
        async with self._kv_lock:
            if self._kv is None:
                self._kv = self._make_kv()
            if not self._kv_opened and 1 not in self.shards:
                await self._kv.open()
                self._kv_opened = True
            return self._kv

    async def kv_get(self, namespace: str, key: str) -> str | None:
        """A plugin's value, from worker 1's file."""
        return await (await self._kv_queue()).kv_get(namespace, key)

    async def kv_put(self, namespace: str, key: str, value: str) -> None:
        """Store a plugin's value durably in worker 1's file."""
        await (await self._kv_queue()).kv_put(namespace, key, value)

    async def kv_delete(self, namespace: str, key: str) -> None:
        """Forget a plugin's value."""
        await (await self._kv_queue()).kv_delete(namespace, key)

    async def kv_items(self, namespace: str, prefix: str = "") -> dict[str, str]:
        """A plugin's values starting with ``prefix``."""
        return await (await self._kv_queue()).kv_items(namespace, prefix)

    # -- shared counters (worker 1's file: one count for every worker) -----------------------------

    async def take(self, requests: list[CounterRequest], now: float) -> CounterRefusal | None:
        """The sending limits' counters, in worker 1's file, so a limit holds for the whole gateway."""
        return await (await self._kv_queue()).take(requests, now)

    async def give_back(self, requests: list[CounterRequest], taken_at: float) -> None:
        """Uncount a transaction that sent nothing after all (worker 1's file)."""
        await (await self._kv_queue()).give_back(requests, taken_at)

    async def usage(self, now: float) -> list[CounterUse]:
        """Every limit's use now, as counted in worker 1's file."""
        return await (await self._kv_queue()).usage(now)

    # -- collection ledger (this worker's file) ----------------------------------------------------

    async def store_collected(self, message: Message, data: bytes, source: str, uidl: str, now: float) -> bool:
        """Called by the collector (worker 1): the message and its mark in one transaction of the own file."""
        return await self.shards[self.own].store_collected(message, data, source, uidl, now)

    async def mark_collected(self, source: str, uidl: str, now: float, note: str = "") -> bool:
        """Called by the collector: remember a refused message."""
        return await self.shards[self.own].mark_collected(source, uidl, now, note)

    async def collected(self, source: str) -> dict[str, float]:
        """Called by the collector: the mailbox's marks."""
        return await self.shards[self.own].collected(source)

    async def forget_collected(self, source: str, uidls: list[str]) -> int:
        """Called by the collector: drop marks of messages gone from the server."""
        return await self.shards[self.own].forget_collected(source, uidls)

    # -- transfer face (``pipeline queue migrate``) ------------------------------------------------

    async def active_owners(self, now: float) -> list[str]:
        """Live lease owners of every file."""
        return [owner for owners in await self._each(lambda q: q.active_owners(now)) for owner in owners]

    async def transfer_counts(self) -> TransferCounts:
        """What the files hold together."""
        out = TransferCounts()
        for c in await self._each(lambda q: q.transfer_counts()):
            out.messages += c.messages
            out.queued += c.queued
            out.attempts += c.attempts
            out.events += c.events
            out.bodies += c.bodies
            out.body_bytes += c.body_bytes
            for state, n in c.recipients.items():
                out.recipients[state] = out.recipients.get(state, 0) + n
        return out

    async def messages_after(self, after: str, limit: int, now: float) -> list[MessageRecord]:
        """A page of every file's messages in id order (ids are unique across the files)."""
        pages = await self._each(lambda q: q.messages_after(after, limit, now))
        return _merged(pages, lambda r: r.id, limit, newest=False)

    async def read_bodies(self, message_ids: list[str]) -> dict[str, bytes]:
        """The bodies of these messages, from whichever file holds them."""
        out: dict[str, bytes] = {}
        for found in await self._each(lambda q: q.read_bodies(message_ids)):
            out.update(found)
        return out

    async def _keyed(self, read: Callable[[SqliteQueue, int, int], Awaitable[list[tuple[int, T]]]], after: int,
                     limit: int) -> list[tuple[int, T]]:
        """A page of a log over the files one after the other, keyed ``file << KEY_BITS | row id``."""
        mask = (1 << KEY_BITS) - 1
        start, row = after >> KEY_BITS, after & mask
        for index in sorted(self.shards):
            if index < start:
                continue
            page = await read(self.shards[index], row if index == start else 0, limit)
            if page:
                return [((index << KEY_BITS) | key, value) for key, value in page]
        return []

    async def attempts_after(self, after: int, limit: int) -> list[tuple[int, Attempt]]:
        """A page of the message log of every file, one file after the other."""
        return await self._keyed(lambda q, a, n: q.attempts_after(a, n), after, limit)

    async def events_after(self, after: int, limit: int) -> list[tuple[int, Event]]:
        """A page of the event log of every file, one file after the other."""
        return await self._keyed(lambda q, a, n: q.events_after(a, n), after, limit)

    async def known_messages(self, ids: list[str]) -> set[str]:
        """Those of ``ids`` any file holds."""
        return set().union(*await self._each(lambda q: q.known_messages(ids)))

    async def import_messages(self, records: list[MessageRecord]) -> list[str]:
        """Imports go into the own file (worker 1's for the administration commands)."""
        known = await self.known_messages([r.id for r in records])
        return await self.shards[self.own].import_messages([r for r in records if r.id not in known])

    async def import_attempts(self, attempts: list[Attempt]) -> int:
        """Message-log lines go into the own file."""
        return await self.shards[self.own].import_attempts(attempts)

    async def import_events(self, events: list[Event]) -> int:
        """Events go into the own file."""
        return await self.shards[self.own].import_events(events)
