"""The message model that hooks receive and return.

``Message`` is one queued message with its recipients; ``Route`` says how a
group of recipients leaves; ``Credentials`` is what to log in with for that hop;
``RecipientResult`` is the outcome of one recipient of one attempt; ``Decision``
is what the retry policy decides about a failure.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from .errors import Reply

if TYPE_CHECKING:  # only an annotation here: the queue commands import this module without pydantic
    from pydantic import SecretStr


class RecipientState(StrEnum):
    """Where one recipient of a queued message stands."""

    PENDING = "pending"      # not tried yet
    DEFERRED = "deferred"    # failed temporarily; next attempt at next_attempt
    HELD = "held"            # put on hold by an administrator
    DELIVERED = "delivered"  # a remote server answered 250 after the final dot
    FAILED = "failed"        # failed permanently (sender notified unless suppressed)
    EXPIRED = "expired"      # stayed undelivered longer than the retry policy allows


class Outcome(StrEnum):
    """The outcome of one delivery attempt for one recipient."""

    DELIVERED = "delivered"
    TEMPORARY = "temporary"
    PERMANENT = "permanent"

    @classmethod
    def of(cls, reply: Reply) -> Outcome:
        """2xx delivered, 4xx temporary, everything else permanent."""
        if 200 <= reply.code < 300:
            return cls.DELIVERED
        return cls.TEMPORARY if 400 <= reply.code < 500 else cls.PERMANENT


@dataclass
class SessionInfo:
    """What the intake knows about the SMTP client that handed a message in."""

    peer: str
    helo: str | None = None
    tls: bool = False
    auth_user: str | None = None
    may_relay: bool = False
    smtputf8: bool = False
    listener: str = ""


@dataclass
class Recipient:
    """One envelope recipient of a queued message and its state."""

    address: str
    state: RecipientState = RecipientState.PENDING
    attempts: int = 0
    next_attempt: float = 0.0
    last_reply: str | None = None
    id: int | None = None


@dataclass
class Message:
    """A message in the pipeline.

    Before queueing (in ``accept``) the body is in memory and ``add_header``
    may still add headers; after queueing the body is read from the queue on
    demand with ``await message.body()`` and is never kept by the queue.
    ``set_body``/``set_loader`` are for the intake and queue backends that make messages.
    """

    id: str
    sender: str
    recipients: list[Recipient]
    created: float
    size: int = 0
    session: SessionInfo | None = None
    mail_options: list[str] = field(default_factory=list)
    attributes: dict[str, Any] = field(default_factory=dict)
    _data: bytes | None = None
    _loader: Callable[[], Awaitable[bytes]] | None = None
    _added_headers: list[tuple[str, str]] = field(default_factory=list)
    _dropped: str | None = None

    @property
    def null_sender(self) -> bool:
        """True for the null reverse-path ``<>`` (bounces): never bounced to."""
        return self.sender == ""

    def add_header(self, name: str, value: str) -> None:
        """Prepend a header; only meaningful during ``accept`` (before queueing)."""
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name or ":" in name:
            raise ValueError("header names and values must be single lines")
        self._added_headers.append((name, value))

    @property
    def added_headers(self) -> list[tuple[str, str]]:
        return list(self._added_headers)

    def remove_header(self, name: str) -> int:
        """Remove every header field called ``name`` (any case), added or received; only during ``accept``.

        Returns how many fields went (continuation lines go with their field). The body must be
        in memory (it is, during ``accept``); RuntimeError otherwise.
        """
        if self._data is None:
            raise RuntimeError("headers can only be removed while the message is in memory (accept)")
        wanted = name.strip().lower().encode("utf-8", "surrogateescape")
        before = len(self._added_headers)
        self._added_headers = [(n, v) for n, v in self._added_headers if n.lower() != name.strip().lower()]
        self._data, removed = _without_field(self._data, wanted)
        return removed + before - len(self._added_headers)

    # -- what accept may change: recipients and whether the message is queued at all -----------

    def add_recipient(self, address: str) -> bool:
        """Add an envelope recipient (a copy, e.g. a rule's ``bcc``); only during ``accept``. False if present."""
        if any(r.address.lower() == address.lower() for r in self.recipients):
            return False
        self.recipients.append(Recipient(address, state=self.recipients[0].state if self.recipients
                                         else RecipientState.PENDING))
        return True

    def replace_recipients(self, addresses: list[str]) -> None:
        """Send to ``addresses`` instead of the envelope recipients (a rule's ``redirect``); only during ``accept``."""
        if not addresses:
            raise ValueError("a message needs at least one recipient")
        state = self.recipients[0].state if self.recipients else RecipientState.PENDING
        unique = list(dict.fromkeys(addresses))
        self.recipients = [Recipient(a, state=state) for a in unique]

    def hold(self, reason: str) -> None:
        """Queue this message held (not delivered until an administrator releases it); only during ``accept``.

        ``reason`` is kept in ``attributes["held"]`` and shown by the console and ``queue show``.
        """
        self.attributes["held"] = reason
        for r in self.recipients:
            r.state = RecipientState.HELD

    @property
    def held(self) -> str | None:
        """Why ``accept`` asked to queue the message held (None: it was not)."""
        reason = self.attributes.get("held")
        return str(reason) if reason is not None else None

    def drop(self, reason: str) -> None:
        """Accept the message but do not queue it (logged with ``reason``); only during ``accept``."""
        self._dropped = reason

    @property
    def dropped(self) -> str | None:
        """Why ``accept`` asked to discard the message (None: it did not)."""
        return self._dropped

    async def body(self) -> bytes:
        """The full message bytes (headers and body, CRLF line ends)."""
        if self._data is not None:
            return self._data
        if self._loader is None:
            raise RuntimeError(f"message {self.id} has no body source")
        return await self._loader()

    def set_body(self, data: bytes | None) -> None:
        """Hold ``data`` as the body in memory (``None``: forget it, read it through the loader)."""
        self._data = data

    def set_loader(self, loader: Callable[[], Awaitable[bytes]]) -> None:
        """Where ``body()`` reads the bytes when they are not held in memory (the queue backend)."""
        self._loader = loader


@dataclass
class Route:
    """How a group of recipients of one message leaves.

    ``plugin`` is the chain entry that routed it (its ``deliver`` normally takes
    it), ``kind`` a short word (``smarthost``, ``direct``), ``destination`` a
    human-readable next hop (``smtp.isp.example:587`` or a domain), and
    ``options`` whatever the routing plugin wants its deliver step to know.
    """

    plugin: str
    kind: str
    destination: str
    recipients: list[str]
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class RouteVia:
    """An answer of ``route`` that hands recipients to another chain entry (a rule's ``route_via``).

    ``Chain.route`` offers ``recipients`` to the ``route`` hook of the chain entry named
    ``entry`` only, wherever it stands in the chain; what it does not take gets no route.
    """

    entry: str
    recipients: list[str]
    reason: str = ""


@dataclass(frozen=True)
class Credentials:
    """How to log in for one hop, as ``authenticate`` returns it.

    ``Credentials.none()`` means "send without SMTP AUTH" (a pre-login step such
    as POP-before-SMTP may already have run). ``label`` describes the login
    without secrets and is what logs and events show.
    """

    username: str | None = None
    password: SecretStr | None = None
    mechanism: str = "auto"
    token: SecretStr | None = None
    label: str = "none"

    @classmethod
    def none(cls, label: str = "none") -> Credentials:
        return cls(label=label)

    @property
    def needs_auth(self) -> bool:
        return self.username is not None


@dataclass
class RecipientResult:
    """The outcome of one attempt for one recipient, as ``deliver`` reports it.

    ``retry_at`` (temporary outcomes only) says the recipient was held back by the gateway's own
    pacing, not failed by the message: a sending limit reached, a destination that asked to slow
    down. It is deferred until then without asking ``on_failure``: never bounced, expired or
    warned about for it.
    """

    recipient: str
    outcome: Outcome
    reply: Reply
    remote_host: str | None = None
    remote_addr: str | None = None
    route: str = ""
    duration: float = 0.0
    retry_at: float | None = None

    @property
    def failed(self) -> bool:
        return self.outcome is not Outcome.DELIVERED

    @classmethod
    def for_all(
        cls, recipients: list[str], reply: Reply, *, remote_host: str | None = None, route: str = ""
    ) -> list[RecipientResult]:
        """The same outcome (from ``reply``) for each recipient: a failure before RCPT, say."""
        return [cls(r, Outcome.of(reply), reply, remote_host, None, route) for r in recipients]


@dataclass(frozen=True)
class Decision:
    """What ``on_failure`` decides for one failed recipient.

    ``retry`` keeps it queued until ``retry_at``; ``bounce`` ends it as failed
    (``expired`` when it ran out of time) and tells the sender unless
    ``notify`` is false; ``drop`` ends it silently. A ``retry`` with ``warn``
    also sends the sender a delay warning (at most one per message).
    """

    action: str
    retry_at: float | None = None
    expired: bool = False
    notify: bool = True
    reason: str = ""
    warn: bool = False

    @classmethod
    def retry(cls, at: float, reason: str = "", *, warn: bool = False) -> Decision:
        return cls("retry", retry_at=at, reason=reason, warn=warn)

    @classmethod
    def bounce(cls, *, expired: bool = False, notify: bool = True, reason: str = "") -> Decision:
        return cls("bounce", expired=expired, notify=notify, reason=reason)

    @classmethod
    def drop(cls, reason: str = "") -> Decision:
        return cls("drop", notify=False, reason=reason)


def _without_field(data: bytes, name: bytes) -> tuple[bytes, int]:
    """``data`` without the header fields called ``name`` (lower case), and how many there were."""
    end = data.find(b"\r\n\r\n")
    head, rest = (data, b"") if end < 0 else (data[: end + 2], data[end + 2:])
    kept: list[bytes] = []
    removed, skipping = 0, False
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):  # a continuation line goes with its field
            if not skipping:
                kept.append(line)
            continue
        skipping = line.split(b":", 1)[0].strip().lower() == name and b":" in line
        if skipping:
            removed += 1
        else:
            kept.append(line)
    return b"\r\n".join(kept) + rest, removed
