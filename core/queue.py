"""The queue interface: what the core needs from a queue backend plugin, and nothing more.

A backend has two faces, implemented by one object (``QueueBackend``), and may offer a third,
optional one (``SharedCounters``: the sending limits' counters, shared by every process):

- ``DeliveryQueue``, the path of every message: ``store`` (the intake), ``claim_due``,
  ``renew``, ``release``, ``record``, ``next_due``, ``read_body`` (the scheduler) and
  ``recover`` (at start);
- ``QueueAdmin``, what people and observers ask: ``get``, ``list``, ``hold``,
  ``release_hold``, ``delete``, ``retry_now``, ``add_event``, ``events``, ``attempts``,
  ``stats``, ``prune``.

A backend may also offer optional faces: ``KeyValueStore`` (small durable values that plugins
keep beside the queue: ``kv_get``, ``kv_put``, ``kv_delete``, ``kv_items``), ``StoreAndClaim``
(a new message stored already claimed by the scheduler that delivers it at once), ``QueueTransfer``
(``pipeline queue migrate``) and ``CollectionLedger`` (the UIDL bookkeeping of mail collected from
POP3 mailboxes, ``core/collect``, in the same transactions as the messages; a backend without it
cannot collect).

A backend holds no delivery policy: the core decides each recipient's new state
(``RecipientUpdate``) and the backend persists it. The promises every backend keeps
(tested by the conformance suite in ``mailpipe.core.testing.queue``, which any backend
runs against itself):

- once ``store`` has returned, the message is on stable storage (it survives ``kill -9``
  and power loss); storage that is full raises ``QueueFull`` and keeps nothing half-written;
- a recipient recorded as delivered (or ended: failed, expired) is never changed again and
  never handed out again;
- a message claimed by one owner is not handed to another until that owner released it,
  its lease ran out, or ``recover`` found the owner dead;
- ``record`` stores one attempt's updates, the message's attributes and any new messages
  (delivery reports) in one transaction: all or nothing.

A backend may also implement the optional ``QueueTransfer`` face, which ``pipeline queue
migrate`` uses to move a stopped queue's messages and history to another backend.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .events import Event
from .message import Message, Recipient, RecipientState

T = TypeVar("T")


@dataclass
class Attempt:
    """One delivery attempt of one recipient: a line of the message log."""

    time: float
    message_id: str
    recipient: str
    outcome: str
    route: str = ""
    remote_host: str | None = None
    remote_addr: str | None = None
    code: int | None = None
    enhanced: str | None = None
    text: str = ""
    duration: float = 0.0
    sender: str = ""
    action: str = ""  # what the attempt led to: delivered, deferred, bounced, expired, dropped
    node: str = ""  # the gateway (its ``hostname``) that made the attempt; several nodes may share a queue


@dataclass(frozen=True)
class RecipientUpdate:
    """A recipient's new state after one attempt, as the core decided it; the backend only persists it.

    ``next_attempt`` is the Unix time of the next try for ``deferred`` (0 for states that end
    the recipient); ``last_reply`` is shown by ``queue list``/``show``; ``attempt`` is the
    message-log line written with it.
    """

    recipient: str
    state: RecipientState
    next_attempt: float
    last_reply: str
    attempt: Attempt


@dataclass
class MessageSummary:
    """One queued message as ``pipeline queue list`` shows it."""

    id: str
    sender: str
    created: float
    size: int
    recipients: dict[str, int] = field(default_factory=dict)  # state -> count
    next_attempt: float | None = None


@dataclass
class MessageDetail:
    """One message with its recipients and the history of every attempt."""

    message: Message
    attempts: list[Attempt]
    client: dict[str, Any] = field(default_factory=dict)


@dataclass
class QueueStats:
    """What ``pipeline stats`` shows: outcomes over a period, and the queue as it is now.

    ``outcomes`` counts recipient attempts since ``since`` by what they led to
    (delivered, deferred, bounced, expired, dropped); ``queue_depth`` is the
    number of messages still queued, ``recipients`` their recipients by state,
    ``oldest`` the arrival time of the oldest queued message.
    """

    since: float
    until: float
    outcomes: dict[str, int] = field(default_factory=dict)
    received: int = 0
    notifications: int = 0
    queue_depth: int = 0
    recipients: dict[str, int] = field(default_factory=dict)
    oldest: float | None = None
    next_attempt: float | None = None


class QueueError(Exception):
    """The queue cannot be used (corrupt, locked, newer version, disk full); the text says why."""


class QueueFull(QueueError):
    """Stable storage is full: the intake answers 452 4.3.1 and keeps nothing half-written."""


class DeliveryQueue(ABC):
    """The path of a message: stored by the intake, claimed, recorded and released by the scheduler.

    All methods are coroutines. ``owner`` names one running scheduler (host, process and
    a random token); a lease is the time until which its claim holds.
    """

    @abstractmethod
    async def open(self) -> None:
        """Open (and create or migrate) the store; raise QueueError with a clear text if unusable."""

    @abstractmethod
    async def close(self) -> None:
        """Flush and close."""

    @abstractmethod
    async def store(self, message: Message, data: bytes) -> None:
        """Commit a new message (all recipients pending, due at ``message.created``) durably.

        Recipients whose state is ``HELD`` (``accept`` called ``message.hold``) are stored held.

        Returns only once it is on stable storage; raises ``QueueFull`` when storage is full.
        """

    @abstractmethod
    async def claim_due(self, now: float, limit: int, owner: str, lease_until: float) -> list[Message]:
        """Hand out up to ``limit`` messages with recipients due at ``now``, leased to ``owner``.

        Each message carries only its recipients that are due (pending or deferred with
        ``next_attempt <= now``); they are not due again until released or recorded.
        The body may come with the message (small ones) or be read on demand
        (``await message.body()``).
        """

    async def renew(self, owner: str, message_ids: list[str], lease_until: float) -> None:  # noqa: B027
        """Extend ``owner``'s leases on these messages (deliveries still in progress).

        The default does nothing: a backend whose leases are long enough for any delivery, or
        that can tell a dead owner by other means (``recover``), need not implement it.
        """

    @abstractmethod
    async def release(self, message_id: str, owner: str) -> None:
        """End ``owner``'s lease; claimed recipients not recorded since are due again at once."""

    @abstractmethod
    async def recover(self, owner: str) -> int:
        """At start: make messages leased by owners that are gone due again; return how many.

        An owner is gone when its lease ran out, or when the backend can tell that its process
        is dead (it never takes a lease from an owner that may still be running).
        """

    @abstractmethod
    async def record(self, message: Message, updates: list[RecipientUpdate], now: float,
                     new_messages: list[tuple[Message, bytes]] | None = None) -> None:
        """Persist one attempt: each recipient's update and log line, in one transaction.

        In the same transaction: store ``message.attributes`` (e.g. that a delay warning
        was sent) and the ``new_messages`` (delivery status notifications), so a crash can
        neither lose a report nor send it twice. A recipient already ended (delivered,
        failed, expired) is never changed again. When no recipient of the message is active
        any more (pending, deferred, held), the message is finished: its body may go, its
        lease ends. Raises ``QueueError`` (nothing stored) when the transaction fails.
        """

    @abstractmethod
    async def next_due(self) -> float | None:
        """The earliest next_attempt of any pending or deferred recipient, or None when nothing waits."""

    @abstractmethod
    async def read_body(self, message_id: str) -> bytes:
        """The stored message bytes; ``QueueError`` if the message has none (finished or deleted)."""

    @property
    def location(self) -> str:
        """Where the queue lives, for people (a file path; a database named without its password).

        Shown by the queue commands and in the startup log line. The default is the class name.
        """
        return type(self).__name__

    async def exists(self) -> bool:
        """Whether the store is already there, so that ``open`` would not create it (called before ``open``).

        The administration commands refuse a queue that does not exist rather than create an
        empty one: a mistyped ``state_dir`` must not look like an empty queue. The default says yes.
        """
        return True

    def subscribe(self, wake: Callable[[], None]) -> None:  # noqa: B027
        """Called once by the gateway at start: call ``wake`` when another process made mail due.

        For queues shared by several processes or nodes (new mail, retry, release made
        elsewhere), so their schedulers need not poll. The default does nothing: the
        scheduler still looks at least once a minute, and ``pipeline queue retry`` pokes the
        local server directly.
        """


class QueueAdmin(ABC):
    """What the CLI, the console, alerts and metrics ask of the queue, and the event log."""

    @abstractmethod
    async def get(self, message_id: str) -> MessageDetail | None:
        """One message with all its recipients and attempt history; None if unknown."""

    @abstractmethod
    async def list(self, *, state: str | None = None, limit: int = 1000) -> list[MessageSummary]:
        """Messages still queued, oldest first (or, with ``state``, those with a recipient in it)."""

    @abstractmethod
    async def retry_now(self, message_ids: list[str] | None, now: float) -> int:
        """Make pending/deferred recipients due now (all messages when ``message_ids`` is None)."""

    @abstractmethod
    async def delete(self, message_ids: list[str]) -> int:
        """Remove messages from the queue without delivering them; how many messages went."""

    @abstractmethod
    async def hold(self, message_ids: list[str]) -> int:
        """Stop delivery of the pending/deferred recipients of these messages until released."""

    @abstractmethod
    async def release_hold(self, message_ids: list[str], now: float) -> int:
        """Make held recipients due now (pending if never tried, deferred otherwise)."""

    @abstractmethod
    def add_event(self, event: Event) -> None:
        """Store a gateway event (buffered; written with the next commit). Never raises."""

    @abstractmethod
    async def events(self, *, since: float | None = None, limit: int = 200, kind: str | None = None,
                     level: str | None = None) -> list[Event]:
        """Stored events, oldest first (the newest ``limit``); ``kind`` matches a prefix
        (``message`` matches ``message.expired``), ``level`` is the lowest level shown."""

    @abstractmethod
    async def attempts(self, *, limit: int = 200, **filters: Any) -> list[Attempt]:
        """The message log: attempts matching filters (message, sender, recipient, since, outcome).

        ``outcome`` matches either the attempt's outcome (delivered, temporary,
        permanent) or what it led to (deferred, bounced, expired, dropped).
        """

    @abstractmethod
    async def stats(self, *, since: float, now: float) -> QueueStats:
        """Counts per outcome since ``since``, queue depth and oldest message (``pipeline stats``)."""

    async def run_once(self, job: str, now: float, every: float) -> bool:
        """Whether this process should run the periodic ``job`` (pruning, alert checks) now.

        True at most once per ``every`` seconds across every process that shares the
        queue, so cluster-wide chores run once, not once per node. The default (a queue
        used by one process) always says yes; the caller keeps its own timer.
        """
        return True

    @abstractmethod
    async def prune(self, now: float) -> dict[str, int]:
        """Remove history older than the backend's retention: attempts, events, finished messages.

        Called at start and then hourly, so the logs cannot fill a disk. Returns how many rows
        of each kind were removed.
        """


class CollectionLedger(ABC):
    """Optional face: which messages of which POP3 mailbox were collected, kept with the messages.

    ``source`` names one mailbox (``user@server:port``), ``uidl`` one message in it (the
    server's unique id). A mark is written in the same transaction as the message it
    stands for, so after any crash a message is either queued and marked, or neither:
    collected again, never lost and never queued twice. Called by the collector only.
    """

    @abstractmethod
    async def store_collected(self, message: Message, data: bytes, source: str, uidl: str, now: float) -> bool:
        """Commit a collected message and its mark in one transaction, as durably as ``store``.

        Returns False, storing nothing, when the mark is already there (the message was
        collected before, maybe by another process). Recipients whose state is ``held``
        are stored held (a loop suspect waits for an administrator). Raises ``QueueFull``
        or ``QueueError`` like ``store``.
        """

    @abstractmethod
    async def mark_collected(self, source: str, uidl: str, now: float, note: str = "") -> bool:
        """Mark a message as dealt with without queueing it (refused by ``accept``); False if already marked."""

    @abstractmethod
    async def collected(self, source: str) -> dict[str, float]:
        """The marks of one mailbox: uidl -> when it was collected."""

    @abstractmethod
    async def forget_collected(self, source: str, uidls: list[str]) -> int:
        """Drop marks of messages that are no longer on the server; how many went."""


class QueueBackend(DeliveryQueue, QueueAdmin):
    """A durable message queue: both faces, one instance per gateway process."""


@dataclass
class MessageRecord:
    """One message with everything a backend stores about it, as ``QueueTransfer`` moves it.

    ``recipients`` carry their state, attempts, next attempt and last reply (their ``id`` is the
    exporting backend's own and is not kept); ``client`` is what the intake stored about the
    SMTP client; ``done_at`` is when the message finished (None while queued); ``node`` is the
    gateway that received it ("" when the backend does not store it); ``body`` is None once the
    message finished or when its body is gone. Leases are never part of a record.
    """

    id: str
    sender: str
    created: float
    size: int
    recipients: list[Recipient]
    client: dict[str, Any] = field(default_factory=dict)
    mail_options: list[str] = field(default_factory=list)
    attributes: dict[str, Any] = field(default_factory=dict)
    done_at: float | None = None
    node: str = ""
    body: bytes | None = None


@dataclass
class TransferCounts:
    """What a queue holds, counted the same way by every backend (``QueueTransfer.transfer_counts``).

    ``messages`` counts every message, finished ones included, ``queued`` those not finished;
    ``recipients`` counts the recipients of those messages by state; ``bodies`` and
    ``body_bytes`` the stored bodies and their total size.
    """

    messages: int = 0
    queued: int = 0
    recipients: dict[str, int] = field(default_factory=dict)
    attempts: int = 0
    events: int = 0
    bodies: int = 0
    body_bytes: int = 0


class QueueTransfer(ABC):
    """The optional face for moving a queue to another backend: ``pipeline queue migrate``.

    Called only while no gateway uses the queue. A backend answers page-sized questions
    (``messages_after``, ``read_bodies``, ``attempts_after``, ``events_after``); the exports built on
    them here read everything the queue holds (finished messages, the message log and the
    event log included) a page at a time, with never more than ``BODY_BUDGET`` bytes of bodies
    read at once. Each import writes one batch in one transaction and is idempotent, so an
    interrupted migration can simply be run again: a message whose id the queue already holds
    is skipped with everything it carries, an attempt or an event already there (same message,
    recipient, time and outcome; same time, kind and text) is skipped. Imported messages
    arrive unleased, each recipient due when it was due in the source.
    """

    PAGE = 200  # messages per page; log lines: five times as many
    BODY_BUDGET = 4 * 1024 * 1024  # bytes of bodies read in one go (a larger body is read by itself)

    @property
    @abstractmethod
    def location(self) -> str:
        """The store, as it may be shown to people (a file path, a DSN without its password)."""

    @abstractmethod
    async def active_owners(self, now: float) -> list[str]:
        """Processes the backend can tell may be using the queue now (their lease owners, with
        a word on why); empty when it sees none. The command refuses to migrate while any is listed."""

    @abstractmethod
    async def transfer_counts(self) -> TransferCounts:
        """What the queue holds now, for the migration's check that everything arrived."""

    @abstractmethod
    async def messages_after(self, after: str, limit: int, now: float) -> list[MessageRecord]:
        """Up to ``limit`` messages whose id sorts after ``after``, in id order, without their bodies.

        A message that was still leased (its process died) comes unleased: its claimed
        recipients are due at ``now``, as ``recover`` would make them.
        """

    @abstractmethod
    async def read_bodies(self, message_ids: list[str]) -> dict[str, bytes]:
        """The stored bodies of these messages (a message without one is left out)."""

    @abstractmethod
    async def attempts_after(self, after: int, limit: int) -> list[tuple[int, Attempt]]:
        """Up to ``limit`` message-log lines written after the one keyed ``after`` (0: from the
        first), each with its key, in the order they were written; lines of deleted messages too."""

    @abstractmethod
    async def events_after(self, after: int, limit: int) -> list[tuple[int, Event]]:
        """Up to ``limit`` events stored after the one keyed ``after`` (0: from the first), with their keys."""

    @abstractmethod
    async def known_messages(self, ids: list[str]) -> set[str]:
        """Those of ``ids`` that the queue holds."""

    @abstractmethod
    async def import_messages(self, records: list[MessageRecord]) -> list[str]:
        """Store these messages in one transaction; the ids stored (those already here are skipped)."""

    @abstractmethod
    async def import_attempts(self, attempts: list[Attempt]) -> int:
        """Append these message-log lines in one transaction; how many (those already here are skipped)."""

    @abstractmethod
    async def import_events(self, events: list[Event]) -> int:
        """Append these events in one transaction; how many (those already here are skipped)."""

    async def export_messages(self, now: float) -> AsyncIterator[MessageRecord]:
        """Every message, finished ones included, in id order, each with its body.

        Bodies are read in groups of at most ``BODY_BUDGET`` bytes (by the messages' sizes), and
        a record is let go of by the export once it was handed on.
        """
        after = ""
        while page := await self.messages_after(after, self.PAGE, now):
            after = page[-1].id
            page.reverse()
            while page:  # popped: neither the page nor the group holds a record once handed on
                group = [page.pop()]
                size = group[0].size
                while page and size + page[-1].size <= self.BODY_BUDGET:
                    size += page[-1].size
                    group.append(page.pop())
                found = await self.read_bodies([record.id for record in group])
                group.reverse()
                while group:
                    record = group.pop()
                    record.body = found.pop(record.id, None)
                    yield record

    def export_attempts(self) -> AsyncIterator[Attempt]:
        """The whole message log, in the order it was written."""
        return _keyed_pages(self.attempts_after, self.PAGE * 5)

    def export_events(self) -> AsyncIterator[Event]:
        """The whole event log, in the order it was stored."""
        return _keyed_pages(self.events_after, self.PAGE * 5)

    async def message_ids(self) -> AsyncIterator[list[str]]:
        """The id of every message the queue holds, a page at a time (what does a migration target hold?)."""
        after = ""
        while page := await self.messages_after(after, self.PAGE * 5, 0.0):
            after = page[-1].id
            yield [record.id for record in page]


class StoreAndClaim(ABC):
    """Optional face: commit a new message already claimed by the scheduler that delivers it at once.

    The intake's hand-off (issue 13): when its own gateway's scheduler has a free slot, a message
    whose recipients are all pending (none held by ``accept``) is stored leased to that scheduler,
    in the same transaction as the store, and its attempt starts from the message in memory; no
    claim transaction and no read of the body follow. The
    promises are those of ``store`` (durable once returned, ``QueueFull``) and of a claim (nobody
    else gets the message until the owner released it, its lease ran out or ``recover`` found
    the owner dead). A backend without this face gets ``store`` and a claim as before.
    """

    @abstractmethod
    async def store_claimed(self, message: Message, data: bytes, owner: str, lease_until: float) -> Message:
        """Commit ``message`` (body ``data``) durably, leased to ``owner`` until ``lease_until``.

        Returns the message as ``claim_due`` would hand it out (every recipient due, the body with
        it or on demand); the caller records and releases it like a claimed one.
        """


class KeyValueStore(ABC):
    """An optional face: small durable values a plugin keeps in the queue's database.

    For state that must outlive a restart and be shared by the nodes of one queue, such as
    ``direct``'s MTA-STS policy cache and TLS-report counters. A backend offers it by
    inheriting it beside ``QueueBackend``; a plugin asks ``isinstance(queue, KeyValueStore)``
    and otherwise keeps its values in memory. Values are short texts (JSON, a few
    kilobytes); a key is unique within its ``namespace`` (the plugin's own word).
    """

    @abstractmethod
    async def kv_get(self, namespace: str, key: str) -> str | None:
        """The value stored under ``key``, or None."""

    @abstractmethod
    async def kv_put(self, namespace: str, key: str, value: str) -> None:
        """Store (or replace) the value of ``key``; on stable storage once returned."""

    @abstractmethod
    async def kv_delete(self, namespace: str, key: str) -> None:
        """Forget ``key`` (nothing happens when it is not there)."""

    @abstractmethod
    async def kv_items(self, namespace: str, prefix: str = "") -> dict[str, str]:
        """Every key of ``namespace`` that starts with ``prefix``, with its value."""


async def _keyed_pages(read: Callable[[int, int], Awaitable[list[tuple[int, T]]]], size: int) -> AsyncIterator[T]:
    """Every row of a log read a page at a time: ``read(after, size)`` gives up to ``size`` rows, each
    with its key, after the key ``after`` (0: from the first); the keys are left out."""
    after = 0
    while page := await read(after, size):
        after = page[-1][0]
        for _, row in page:
            yield row


# -- the optional third face: counters shared by every process on the queue -----------------------

COUNTER_BUCKETS = 60
"""A counter's window is kept as this many buckets (plus the one being filled): 1h in minutes."""


@dataclass(frozen=True)
class CounterRequest:
    """Count ``amount`` more against ``key``, which allows at most ``max`` per ``every`` seconds.

    ``label`` says in words what is counted (``100 messages/h for office@isp.example``); the
    console's Statistics page shows it.
    """

    key: str
    amount: int
    max: int
    every: float
    label: str = ""

    def bucket(self, at: float) -> int:
        """The bucket that time ``at`` falls in (buckets are ``every / COUNTER_BUCKETS`` long)."""
        return int(at // (self.every / COUNTER_BUCKETS))

    def first_bucket(self, now: float) -> int:
        """The oldest bucket still inside the window at ``now`` (kept a bucket longer: never too lenient)."""
        return self.bucket(now) - COUNTER_BUCKETS

    def refusal(self, buckets: list[tuple[int, int]], now: float) -> CounterRefusal | None:
        """Whether ``amount`` fits, given the window's ``(bucket, count)`` rows; the refusal when it does not.

        An amount larger than ``max`` (one message for more recipients than a recipients limit)
        fits only an empty window, so it is never stuck for ever.
        """
        rows = sorted((b, c) for b, c in buckets if b >= self.first_bucket(now))
        used = sum(c for _, c in rows)
        if used + self.amount <= self.max or used == 0:
            return None
        width = self.every / COUNTER_BUCKETS
        left = used
        slot = (rows[-1][0] + COUNTER_BUCKETS + 1) * width
        for b, c in rows:
            left -= c
            if left + self.amount <= self.max or left == 0:
                slot = (b + COUNTER_BUCKETS + 1) * width
                break
        return CounterRefusal(self.key, self.label, used, self.max, self.every, max(slot, now))


@dataclass(frozen=True)
class CounterRefusal:
    """A take that did not fit: which counter is full, its use, and when the amount fits again."""

    key: str
    label: str
    used: int
    max: int
    every: float
    next_slot: float


@dataclass(frozen=True)
class CounterUse:
    """One counter as the Statistics page shows it: its use in the window ending at ``now``."""

    key: str
    label: str
    used: int
    max: int
    every: float
    last: float


class SharedCounters(ABC):
    """An optional face of a queue backend: sliding-window counters shared by every process on the queue.

    The sending limits of the delivery plugins (``plugins/limits``) count messages and
    recipients here, so the counts survive restarts and hold across the workers and nodes
    that share the queue. A backend offers it by subclassing this too; without it, the
    limits count in each process's memory. The window arithmetic is ``CounterRequest``'s:
    the backend stores ``(key, bucket, count)`` rows and makes ``take`` atomic.
    """

    @abstractmethod
    async def take(self, requests: list[CounterRequest], now: float) -> CounterRefusal | None:
        """Count every request at ``now``, or none: None when all fitted, else the first refusal.

        Atomic across processes: two takes never both fit into the last slot.
        """

    @abstractmethod
    async def give_back(self, requests: list[CounterRequest], taken_at: float) -> None:
        """Uncount requests taken at ``taken_at`` (nothing was sent after all)."""

    @abstractmethod
    async def usage(self, now: float) -> list[CounterUse]:
        """Every counter used within its window (or the last day), by label."""
