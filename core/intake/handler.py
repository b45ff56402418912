"""The aiosmtpd handler: what the gateway answers at each SMTP step.

- EHLO: adds PIPELINING to aiosmtpd's SIZE, 8BITMIME, SMTPUTF8, STARTTLS, AUTH.
- RCPT: relay control. Clients in ``relay.networks`` or logged in may relay;
  anyone else gets ``554 5.7.1``. At most ``intake.max_recipients``.
- DATA: line ends made canonical, every plugin's ``accept`` hook, a Received
  header, then the durable commit; ``250`` only once the queue has the message
  on stable storage. ``accept`` may change the envelope recipients and header
  fields, queue the message held (``message.hold``) or discard it (``message.drop``).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..clock import Clock
from ..errors import Reply, SMTPError
from ..events import Events
from ..ids import new_queue_id
from ..message import Message, Recipient, SessionInfo
from ..queue import DeliveryQueue, QueueError, QueueFull
from ..runtime import RuntimeHolder
from ..sessions import Sessions
from .normalise import normalise_line_ends
from .received import received_header

log = logging.getLogger("mailpipe.intake")


class Outage:
    """Whether the queue refused the last store: one event when an outage begins, one when it ends."""

    def __init__(self) -> None:
        self.down = False

    def began(self) -> bool:
        """A store failed; True if the queue was working until now."""
        first, self.down = not self.down, True
        return first

    def ended(self) -> bool:
        """A store worked; True if the queue was down until now."""
        was, self.down = self.down, False
        return was


@dataclass(frozen=True)
class IntakeServices:
    """What the intake needs from the gateway, and nothing else.

    ``runtimes`` gives the settings and chain in force (read per message, so a reload
    applies to the next message); ``stored`` is told of each committed message (the
    scheduler delivers it now if it may).
    """

    runtimes: RuntimeHolder
    queue: DeliveryQueue
    events: Events
    clock: Clock
    sessions: Sessions
    stored: Callable[[Message], None]
    outage: Outage = field(default_factory=Outage)


def _addr(address: str) -> str:
    return "" if address in ("<>", "") else address


def _bad_address(address: str, envelope: Any) -> str | None:
    """A reply refusing an envelope address with control characters, or 8-bit without SMTPUTF8."""
    if any(ord(c) < 32 or ord(c) == 127 for c in address):
        return "553 5.1.3 Control characters are not allowed in addresses"
    if not address.isascii() and not getattr(envelope, "smtp_utf8", False):
        return "553 5.6.7 Non-ASCII address without SMTPUTF8 (RFC 6531)"
    return None


class IntakeHandler:
    """Handler object for aiosmtpd's ``SMTP`` protocol; one per listener."""

    def __init__(self, services: IntakeServices, listener: str) -> None:
        self.services = services
        self.settings = services.runtimes.current.settings
        self.listener = listener

    def may_relay(self, session: Any) -> bool:
        """Relay is allowed from ``relay.networks`` and for logged-in clients."""
        if session.authenticated:
            return True
        try:
            ip = ipaddress.ip_address(session.peer[0])
        except (ValueError, TypeError, IndexError):
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self.settings.relay.networks)

    async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname
        responses = [r for r in responses if r.strip() != "250-AUTH"]
        responses.insert(len(responses) - 1, "250-PIPELINING")
        return responses

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str,
                          mail_options: list[str]) -> str:
        if bad := _bad_address(address, envelope):
            return bad
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        if not self.may_relay(session):
            log.info("relay denied for %s from %s", address, session.peer[0])
            return "554 5.7.1 Relay access denied: log in or send from an allowed network"
        if bad := _bad_address(address, envelope):
            return bad
        if len(envelope.rcpt_tos) >= self.settings.intake.max_recipients:
            return "452 4.5.3 Too many recipients"
        if rcpt_options:
            return "555 5.5.4 RCPT parameters not supported"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    def session_info(self, server: Any, session: Any, envelope: Any) -> SessionInfo:
        tls = session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None
        return SessionInfo(
            peer=str(session.peer[0]),
            helo=session.host_name,
            tls=tls,
            auth_user=session.auth_data if session.authenticated and isinstance(session.auth_data, str) else None,
            may_relay=True,
            smtputf8=bool(getattr(envelope, "smtp_utf8", False)),
            listener=self.listener,
        )

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        services = self.services
        runtime = services.runtimes.current
        now = services.clock.now()
        info = self.session_info(server, session, envelope)
        queue_id = new_queue_id(now)
        data = normalise_line_ends(bytes(envelope.original_content))
        if b"\x00" in data:
            return "554 5.6.0 Message contains NUL characters, which SMTP does not allow"
        message = Message(
            id=queue_id,
            sender=_addr(envelope.mail_from),
            recipients=[Recipient(address=r) for r in envelope.rcpt_tos],
            created=now,
            session=info,
            mail_options=list(envelope.mail_options),
        )
        message.set_body(data)
        try:
            for result in await runtime.chain.each("accept", message=message, session=info):
                if isinstance(result, Reply) and result.code >= 400:
                    raise SMTPError(result.code, result.enhanced, result.text)
        except SMTPError as exc:
            log.info("message from %s refused by accept: %s", info.peer, exc.reply)
            return str(exc.reply)
        if message.dropped is not None:  # a policy stage discarded it: the client is told nothing else
            services.events.emit("message.discarded", f"{queue_id} from <{message.sender}> for "
                                 f"{', '.join(r.address for r in message.recipients)} discarded at intake: "
                                 f"{message.dropped}", level="warning", message=queue_id, sender=message.sender)
            return f"250 2.0.0 Ok: queued as {queue_id}"
        data = await message.body()  # as accept left it (a stage may have removed header fields)
        header = received_header(info, runtime.settings.hostname, queue_id, envelope.rcpt_tos, now,
                                 esmtp=bool(session.extended_smtp))
        extra = b"".join(f"{n}: {v}\r\n".encode("utf-8", "surrogateescape") for n, v in message.added_headers)
        stored = header + extra + data
        message.set_body(None)
        message.size = len(stored)
        try:
            await services.queue.store(message, stored)
        except QueueFull as exc:
            services.events.emit("queue.full", str(exc), level="error")
            return "452 4.3.1 Insufficient system storage"
        except QueueError as exc:
            if services.outage.began():  # one event per outage, not one per refused message
                services.events.emit("queue.error", f"{exc}; messages are refused with 451 until it works again",
                                     level="error")
            else:
                log.info("message from %s refused: the queue is unavailable", info.peer)
            return "451 4.3.0 Queue unavailable, try again later"
        if services.outage.ended():
            services.events.emit("queue.available", "the queue takes messages again")
        if message.held is not None:
            services.events.emit("message.held", f"{queue_id} from <{message.sender}> queued held: {message.held}; "
                                 "release it in the console or with `pipeline queue release`",
                                 level="warning", message=queue_id, reason=message.held)
        log.info("%s: accepted from %s <%s> for %d recipient(s), %d bytes", queue_id, info.peer,
                 message.sender, len(message.recipients), message.size)
        services.stored(message)
        return f"250 2.0.0 Ok: queued as {queue_id}"
