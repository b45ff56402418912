"""Reaching the smarthost: the listed servers in order, until one greets and speaks (E)SMTP.

The next server is tried when one is unreachable, does not answer in time,
fails TLS, or answers 4xx or 5xx at connect, greeting, EHLO or STARTTLS. When
none works the failure is temporary (451): a smarthost that turns the gateway
away says nothing about the message, so the mail stays queued and the retry
policy decides how long it may wait. A failed login is not tried on the next
server (it would fail there too, and count against the account).
"""

from __future__ import annotations

from mailpipe.core.errors import Reply

from ..outbound.replies import OutboundError, none_usable
from ..outbound.session import ClientSettings, Login, Session, open_session


async def open_first(
    servers: list[tuple[str, int]], settings: ClientSettings, *, login: Login | None = None,
) -> Session:
    """A session (greeted, EHLO, STARTTLS, logged in) with the first of ``servers`` that works.

    Called by the smarthost plugin when its pool has no idle session for a
    login. Raises ``OutboundError``: the login's failure as it is, or a
    temporary reply naming what each server did.
    """
    failures: list[tuple[str, Reply]] = []
    for host, port in servers:
        try:
            return await open_session(host, port, settings, login=login)
        except OutboundError as exc:
            if not exc.next_host:
                raise
            failures.append((f"{host}:{port}", exc.reply))
    raise OutboundError(none_usable(failures, "smarthost server"), host=servers[-1][0], next_host=False)
