"""The aiosmtpd handler: what the gateway answers at each SMTP step.

- EHLO: adds PIPELINING to aiosmtpd's SIZE, 8BITMIME, SMTPUTF8, STARTTLS, AUTH.
- RCPT: relay control. Clients in ``relay.networks`` or logged in may relay;
  anyone else gets ``554 5.7.1``. At most ``intake.max_recipients``.
- DATA: line ends made canonical, then ``admit.py`` (shared with the POP3
  collector): every plugin's ``accept`` hook, a Received header, the durable
  commit; ``250`` only once the queue has the message on stable storage.
  ``accept`` may change the envelope recipients and header fields, queue the
  message held (``message.hold``) or discard it (``message.drop``).
"""

from __future__ import annotations

import ipaddress
import logging
import re
from typing import Any

from ..ids import new_queue_id
from ..message import Message, Recipient, SessionInfo
from .admit import admit
from .normalise import normalise_line_ends
from .received import received_header
from .services import IntakeServices, Outage

__all__ = ["IntakeHandler", "IntakeServices", "Outage"]

log = logging.getLogger("mailpipe.intake")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _addr(address: str) -> str:
    return "" if address in ("<>", "") else address


def _bad_address(address: str, envelope: Any) -> str | None:
    """A reply refusing an envelope address with control characters, or 8-bit without SMTPUTF8."""
    if _CONTROL.search(address):
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
        header = received_header(info, runtime.settings.hostname, queue_id, envelope.rcpt_tos, now,
                                 esmtp=bool(session.extended_smtp))
        return str((await admit(services, runtime, message, data, header)).reply)
