"""The queue interface: what the core needs from a queue backend plugin.

The promise every backend keeps: once ``store`` has returned, the message is on
stable storage (it survives ``kill -9`` and power loss); a recipient recorded
as delivered is never handed out again; a message claimed by one scheduler is
not handed to another until that one released it or died.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from .events import Event
from .message import Decision, Message, RecipientResult


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


class QueueBackend(ABC):
    """A durable message queue. One instance per gateway process; all methods are coroutines
    except ``add_event`` (fire and forget)."""

    @abstractmethod
    async def open(self) -> None:
        """Open (and create or migrate) the store; raise QueueError with a clear text if unusable."""

    @abstractmethod
    async def close(self) -> None:
        """Flush and close."""

    @abstractmethod
    async def store(self, message: Message, data: bytes) -> None:
        """Commit a new message durably; returns only once it is on stable storage."""

    @abstractmethod
    async def claim_due(self, now: float, limit: int, owner: str, lease_until: float) -> list[Message]:
        """Hand out up to ``limit`` messages with recipients due at ``now``, leased to ``owner``."""

    @abstractmethod
    async def release(self, message_id: str, owner: str) -> None:
        """End ``owner``'s lease; recipients still active become due at their next_attempt."""

    @abstractmethod
    async def recover(self, owner: str) -> int:
        """At start: make messages leased by dead owners due again; return how many."""

    @abstractmethod
    async def record(
        self, message: Message, results: list[RecipientResult], decisions: dict[str, Decision], now: float,
        new_messages: list[tuple[Message, bytes]] | None = None,
    ) -> None:
        """Record one attempt's per-recipient results and the decisions for the failed ones.

        In the same transaction: store ``message.attributes`` (e.g. that a delay
        warning was sent) and the ``new_messages`` (delivery status
        notifications), so a crash can neither lose a bounce nor send it twice.
        A recipient already recorded as delivered is never changed again.
        """

    @abstractmethod
    async def next_due(self) -> float | None:
        """The earliest next_attempt of any active recipient, or None when nothing waits."""

    @abstractmethod
    async def read_body(self, message_id: str) -> bytes:
        """The stored message bytes."""

    @abstractmethod
    async def get(self, message_id: str) -> MessageDetail | None:
        """One message with its recipients and attempt history; None if unknown."""

    @abstractmethod
    async def list(self, *, state: str | None = None, limit: int = 1000) -> list[MessageSummary]:
        """Messages with active recipients (or with a recipient in ``state``)."""

    @abstractmethod
    async def retry_now(self, message_ids: list[str] | None, now: float) -> int:
        """Make deferred recipients due now (all messages when ``message_ids`` is None)."""

    @abstractmethod
    async def delete(self, message_ids: list[str]) -> int:
        """Remove messages from the queue without delivering them."""

    @abstractmethod
    async def hold(self, message_ids: list[str]) -> int:
        """Stop delivery of the active recipients of these messages until released."""

    @abstractmethod
    async def release_hold(self, message_ids: list[str], now: float) -> int:
        """Make held recipients due now."""

    @abstractmethod
    def add_event(self, event: Event) -> None:
        """Store a gateway event (buffered; written with the next commit)."""

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

    async def stats(self, *, since: float, now: float) -> QueueStats:
        """Counts per outcome since ``since``, queue depth and oldest message (``pipeline stats``)."""
        return QueueStats(since, now)

    async def prune(self, now: float) -> dict[str, int]:
        """Remove history older than the backend's retention: attempts, events, finished messages.

        Called by the scheduler at start and then hourly, so the logs cannot
        fill a disk. Returns how many rows of each kind were removed.
        """
        return {}
