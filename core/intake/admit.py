"""The one way a message enters the queue: every ``accept`` stage, its trace header, the durable commit.

Two callers, one code path: the SMTP handler at the end of DATA (``handler.py``) and the
collector for each message it fetched from a POP3 mailbox (``core/collect``). Both get the
same policy stages (rules, virus scanning), the same outage events when the queue refuses,
and the same "stored" notice that wakes the scheduler. Only the commit differs: the SMTP
intake calls ``queue.store``; the collector commits the message together with its UIDL
mark (``CollectionLedger.store_collected``), which may find it already there.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..errors import Reply, SMTPError
from ..message import Message
from ..queue import QueueError, QueueFull
from ..runtime import Runtime
from .services import IntakeServices

log = logging.getLogger("mailpipe.intake")

Commit = Callable[[Message, bytes], Awaitable[bool | None]]
"""Stores the message durably; False when it was already there (nothing stored), else True or None."""


@dataclass(frozen=True)
class Admission:
    """What became of a message: the reply an SMTP client gets, whether it was committed now, and whether
    the queue itself failed (full or unusable: the next message would fare no better)."""

    reply: Reply
    stored: bool = False
    queue_failed: bool = False

    @property
    def refused(self) -> bool:
        """An ``accept`` stage or the queue said no (4xx or 5xx)."""
        return self.reply.code >= 400


async def admit(services: IntakeServices, runtime: Runtime, message: Message, data: bytes, trace: bytes,
                commit: Commit | None = None) -> Admission:
    """Run ``accept`` on ``message`` (body ``data``), then commit ``trace`` + added headers + ``data``.

    ``message.session`` describes where it came from (an SMTP client, or a POP3 mailbox);
    ``commit`` defaults to the services' ``commit`` (the gateway's hand-off to its scheduler),
    else ``queue.store``. The reply is 250 once the message is on stable
    storage (or was already), the refusal of an ``accept`` stage, 452 when the queue is full,
    451 while it cannot be used (one ``queue.error`` event per outage).
    """
    peer = message.session.peer if message.session else "?"
    message.set_body(data)
    try:
        for result in await runtime.chain.each("accept", message=message, session=message.session):
            if isinstance(result, Reply) and result.code >= 400:
                raise SMTPError(result.code, result.enhanced, result.text)
    except SMTPError as exc:
        log.info("message from %s refused by accept: %s", peer, exc.reply)
        return Admission(exc.reply)
    if message.dropped is not None:  # a policy stage discarded it: the client is told nothing else
        services.events.emit("message.discarded", f"{message.id} from <{message.sender}> for "
                             f"{', '.join(r.address for r in message.recipients)} discarded at intake: "
                             f"{message.dropped}", level="warning", message=message.id, sender=message.sender)
        return Admission(Reply(250, "2.0.0", f"Ok: queued as {message.id}"))
    data = await message.body()  # as accept left it (a stage may have removed header fields)
    extra = b"".join(f"{n}: {v}\r\n".encode("utf-8", "surrogateescape") for n, v in message.added_headers)
    stored = trace + extra + data
    message.set_body(None)
    message.size = len(stored)
    try:
        fresh = await (commit or services.commit or services.queue.store)(message, stored)
    except QueueFull as exc:
        services.events.emit("queue.full", str(exc), level="error")
        return Admission(Reply(452, "4.3.1", "Insufficient system storage"), queue_failed=True)
    except QueueError as exc:
        if services.outage.began():  # one event per outage, not one per refused message
            services.events.emit("queue.error", f"{exc}; messages are refused with 451 until it works again",
                                 level="error")
        else:
            log.info("message from %s refused: the queue is unavailable", peer)
        return Admission(Reply(451, "4.3.0", "Queue unavailable, try again later"), queue_failed=True)
    if services.outage.ended():
        services.events.emit("queue.available", "the queue takes messages again")
    if fresh is False:
        log.info("%s: from %s was queued before; not queued again", message.id, peer)
        return Admission(Reply(250, "2.0.0", "Ok: queued before"))
    if message.held is not None:
        services.events.emit("message.held", f"{message.id} from <{message.sender}> queued held: {message.held}; "
                             "release it in the console or with `pipeline queue release`",
                             level="warning", message=message.id, reason=message.held)
    log.info("%s: accepted from %s <%s> for %d recipient(s), %d bytes", message.id, peer,
             message.sender, len(message.recipients), message.size,
             extra={"fields": {"message": message.id, "sender": message.sender, "client": peer,
                               "nrcpt": len(message.recipients), "size": message.size}})
    services.stored(message)
    return Admission(Reply(250, "2.0.0", f"Ok: queued as {message.id}"), stored=True)
