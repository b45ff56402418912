"""Reaching the smarthost: the listed servers in order, until one greets and speaks (E)SMTP.

The next server is tried when one is unreachable, does not answer in time,
fails TLS, or answers 4xx or 5xx at connect, greeting, EHLO or STARTTLS. When
none works the failure is temporary (451): a smarthost that turns the gateway
away says nothing about the message, so the mail stays queued and the retry
policy decides how long it may wait.
"""

from __future__ import annotations

import ssl

import aiosmtplib

from mailpipe.core.errors import Reply

from ..outbound.connection import ConnectFailed, Endpoint, open_connection


class SmarthostUnavailable(Exception):
    """No listed server could be reached; ``reply`` (temporary) tells what each one did."""

    def __init__(self, reply: Reply, host: str | None) -> None:
        super().__init__(str(reply))
        self.reply = reply
        self.host = host


async def connect_first(
    endpoints: list[Endpoint], *, helo: str, timeout: float, tls_context: ssl.SSLContext | None,
) -> tuple[aiosmtplib.SMTP, Endpoint]:
    """A connected client (after greeting, EHLO, STARTTLS) to the first server that works."""
    failures: list[tuple[Endpoint, Reply]] = []
    for endpoint in endpoints:
        try:
            client = await open_connection(endpoint, helo=helo, timeout=timeout, tls_context=tls_context)
            return client, endpoint
        except ConnectFailed as exc:
            failures.append((endpoint, exc.reply))
    if len(failures) == 1:
        endpoint, reply = failures[0]
        if reply.temporary:
            raise SmarthostUnavailable(reply, endpoint.host)
        raise SmarthostUnavailable(Reply(451, "4.4.0", f"smarthost unusable: {reply}"), endpoint.host)
    text = "; ".join(f"{ep.label}: {reply}" for ep, reply in failures)
    raise SmarthostUnavailable(Reply(451, "4.4.1", f"no smarthost server usable: {text}"), failures[-1][0].host)
