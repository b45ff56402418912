"""What the queue conformance suite is made of: its clock, owners, messages, updates, scenarios.

Importable for a backend's own extra tests too: ``new_message`` builds a message and its
bytes, ``update`` the ``RecipientUpdate`` the core would make after an attempt, ``scenario``
turns an ``async def`` test into a plain pytest test (needs no pytest plugin).
"""

from __future__ import annotations

import asyncio
import functools
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from mailpipe.core.ids import new_queue_id
from mailpipe.core.message import Message, Recipient, RecipientState, SessionInfo
from mailpipe.core.queue import Attempt, MessageDetail, QueueBackend, RecipientUpdate

QueueFactory = Callable[[], QueueBackend]
"""Makes a new, unopened backend on the store of one test; each call reopens the same store."""

T0 = 4_000_000_000.0  # the suite's clock: in the wall clock's future (2096)
PAST = 1_000_000_000.0  # in the wall clock's past (2001): leases ending here have run out
SCENARIO_TIMEOUT = 120.0
SENDER = "alice@example.org"
BOB, CAROL, DAVE = "bob@example.net", "carol@example.net", "dave@example.net"
FILL_BODY = 64 * 1024
FILL_LIMIT = 2000  # messages of FILL_BODY bytes: 128 MB at most before "storage never filled"


def owner(name: str) -> str:
    """A lease owner named as the scheduler names itself (host, process, token): this live process."""
    return f"{socket.gethostname()}:{os.getpid()}:{name}"


OWNER_A, OWNER_B, OWNER_C = owner("conformance-a"), owner("conformance-b"), owner("conformance-c")

_T = TypeVar("_T")


def run(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run one test scenario in a new event loop, bounded in time."""
    return asyncio.run(asyncio.wait_for(coro, SCENARIO_TIMEOUT))


def scenario(fn: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """Make an ``async def`` test method a plain pytest test (each runs in its own event loop)."""

    @functools.wraps(fn)
    def test(*args: Any, **kwargs: Any) -> None:
        async def main() -> None:
            await fn(*args, **kwargs)

        run(main())

    return test


@asynccontextmanager
async def opened(make: QueueFactory) -> AsyncIterator[QueueBackend]:
    """A backend on the test's store, opened, and closed again at the end."""
    queue = make()
    await queue.open()
    try:
        yield queue
    finally:
        await queue.close()


def new_message(created: float, recipients: Iterable[str], *, sender: str = SENDER, size: int = 200,
                session: SessionInfo | None = None, mail_options: list[str] | None = None,
                attributes: dict[str, Any] | None = None) -> tuple[Message, bytes]:
    """A message arriving at ``created`` (id, recipients) and its bytes, about ``size`` long."""
    mid = new_queue_id(created)
    head = (f"From: <{sender or 'mailer-daemon@gw.test'}>\r\nSubject: conformance {mid}\r\n"
            f"Message-ID: <{mid}@conformance.test>\r\n\r\n").encode()
    line = b"x" * 70 + b"\r\n"
    data = head + line * max(1, (size - len(head)) // len(line))
    message = Message(mid, sender, [Recipient(a) for a in recipients], created, size=len(data), session=session,
                      mail_options=list(mail_options or []), attributes=dict(attributes or {}))
    return message, data


_STATES = {
    RecipientState.DELIVERED: ("delivered", "delivered", 250, "2.0.0", "ok: queued as 4711"),
    RecipientState.DEFERRED: ("temporary", "deferred", 451, "4.4.1", "no answer from host"),
    RecipientState.FAILED: ("permanent", "bounced", 550, "5.1.1", "no such user"),
    RecipientState.EXPIRED: ("temporary", "expired", 451, "4.4.7", "given up"),
}


def update(message: Message, recipient: str, state: RecipientState, now: float,
           next_attempt: float = 0.0) -> RecipientUpdate:
    """The update the core would make for ``recipient`` after an attempt at ``now`` that led to ``state``."""
    outcome, action, code, enhanced, text = _STATES[state]
    attempt = Attempt(now, message.id, recipient, outcome, "smarthost", "mx.example.net", "192.0.2.25", code,
                      enhanced, text, 0.25, message.sender, action)
    return RecipientUpdate(recipient, state, next_attempt, f"{code} {enhanced} {text}", attempt)


async def states(queue: QueueBackend, message_id: str) -> dict[str, RecipientState]:
    """Each recipient's state, as ``get`` shows it."""
    detail = await shown(queue, message_id)
    return {r.address: r.state for r in detail.message.recipients}


async def shown(queue: QueueBackend, message_id: str) -> MessageDetail:
    """``get``, which must know the message."""
    detail = await queue.get(message_id)
    assert detail is not None, f"message {message_id} is not in the queue"
    return detail


def due(messages: list[Message]) -> dict[str, list[str]]:
    """What a claim handed out: message id -> the addresses of its recipients."""
    return {m.id: [r.address for r in m.recipients] for m in messages}


async def stored(queue: QueueBackend, created: float, recipients: Iterable[str], **kw: Any) -> Message:
    """Store a new message and return it."""
    message, data = new_message(created, recipients, **kw)
    await queue.store(message, data)
    return message


async def attempted_once(queue: QueueBackend, recipients: list[str],
                         outcomes: dict[str, RecipientState | tuple[RecipientState, float]]) -> Message:
    """A message to ``recipients`` stored at ``T0``, claimed, one attempt recorded at ``T0 + 1`` and released.

    ``outcomes`` maps a recipient to its new state, or to (state, next attempt) for a deferral;
    recipients not named stay as they were. Returns the stored message.
    """
    message = await stored(queue, T0, recipients)
    claimed = await claim_one(queue, message.id, T0)
    updates = []
    for recipient, outcome in outcomes.items():
        state, next_attempt = outcome if isinstance(outcome, tuple) else (outcome, 0.0)
        updates.append(update(claimed, recipient, state, T0 + 1, next_attempt))
    await queue.record(claimed, updates, T0 + 1)
    await queue.release(message.id, OWNER_A)
    return message


async def claim_one(queue: QueueBackend, message_id: str, now: float, owner: str = OWNER_A,
                    lease_until: float | None = None) -> Message:
    """Claim at ``now`` and return the claimed message ``message_id`` (which must be among them)."""
    claimed = await queue.claim_due(now, 100, owner, now + 300 if lease_until is None else lease_until)
    [message] = [m for m in claimed if m.id == message_id]
    return message
