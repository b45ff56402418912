"""Opening an outbound SMTP connection: connect, greeting, EHLO (HELO fallback), STARTTLS.

Every failure is raised as ``ConnectFailed`` carrying the reply that stands for
it, so the caller can try the next host or give every recipient that outcome.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

import aiosmtplib

from mailpipe.core.errors import Reply

from .replies import reply_for


class ConnectFailed(Exception):
    """A connection could not be set up; ``reply`` says why (the caller may try another server)."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(str(reply))
        self.reply = reply


@dataclass(frozen=True)
class Endpoint:
    """Where to connect and how: host (name or address, also the name TLS checks), port, TLS mode."""

    host: str
    port: int
    tls: str = "none"  # none | starttls | implicit

    @property
    def label(self) -> str:
        return f"{self.host}:{self.port}"


async def open_connection(
    endpoint: Endpoint, *, helo: str, timeout: float, tls_context: ssl.SSLContext | None = None,
) -> aiosmtplib.SMTP:
    """A connected client after greeting, EHLO and (with ``tls: starttls``) STARTTLS."""
    label = endpoint.label
    client = aiosmtplib.SMTP(
        hostname=endpoint.host, port=endpoint.port, local_hostname=helo,
        timeout=timeout, use_tls=endpoint.tls == "implicit", start_tls=False,
        tls_context=tls_context if endpoint.tls == "implicit" else None,
    )
    try:
        await client.connect()
    except aiosmtplib.SMTPConnectResponseError as exc:
        raise ConnectFailed(reply_for(exc, "greeting", label)) from exc
    except Exception as exc:  # noqa: BLE001 - refused, unreachable, timed out, TLS failure
        raise ConnectFailed(reply_for(exc, "connect", label)) from exc
    try:
        try:
            await client.ehlo()
        except aiosmtplib.SMTPHeloError:
            await client.helo()
        if endpoint.tls == "starttls":
            if not client.supports_extension("starttls"):
                raise ConnectFailed(Reply(451, "4.7.4", f"{label} does not offer STARTTLS, which is required"))
            await client.starttls(server_hostname=endpoint.host, tls_context=tls_context)
            await client.ehlo()
    except ConnectFailed:
        client.close()
        raise
    except Exception as exc:  # noqa: BLE001
        client.close()
        raise ConnectFailed(reply_for(exc, "EHLO/STARTTLS", label)) from exc
    return client


async def close_quietly(client: aiosmtplib.SMTP) -> None:
    """QUIT when possible, close in any case."""
    try:
        if client.is_connected:
            await client.quit()
    except Exception:  # noqa: BLE001
        client.close()
