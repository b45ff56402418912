"""Opening an SMTP session with one MX host: connect, greeting, EHLO, STARTTLS.

TLS modes: ``opportunistic`` uses STARTTLS when offered and checks no
certificate (Postfix's ``may``); when the TLS handshake itself fails the host is
tried once more in plain text, as Postfix does. ``required`` refuses a host
that does not offer STARTTLS or whose handshake fails (the next MX host is
tried). ``none`` never starts TLS.

Every failure is a ``HostFailed`` carrying the reply that stands for it; the
caller then tries the next MX host.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

import aiosmtplib

from mailpipe.core.errors import Reply
from mailpipe.plugins.outbound.replies import reply_for
from mailpipe.plugins.outbound.tls import client_context

from .hosts import ConnectError, connect_first, interleave


class HostFailed(Exception):
    """This MX host cannot take mail now; ``reply`` says why (always tried on the next host)."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(str(reply))
        self.reply = reply


class _TlsFailed(HostFailed):
    """The STARTTLS handshake failed (a plain-text retry may follow in opportunistic mode)."""


@dataclass
class Session:
    """A connected, greeted SMTP client for one MX host and address, ready for MAIL FROM."""

    client: aiosmtplib.SMTP
    host: str
    address: str
    port: int
    tls: bool
    messages: int = 0

    @property
    def label(self) -> str:
        return f"{self.host}[{self.address}]:{self.port}"


@dataclass(frozen=True)
class SessionSettings:
    """How sessions are opened: EHLO name, timeouts, TLS mode, address family preference."""

    helo: str
    port: int
    timeout: float
    connect_timeout: float
    tls: str = "opportunistic"  # opportunistic | required | none
    prefer_ipv6: bool = True
    happy_eyeballs_delay: float = 0.3


_TLS_CONTEXT: ssl.SSLContext | None = None


def _tls_context() -> ssl.SSLContext:
    global _TLS_CONTEXT
    if _TLS_CONTEXT is None:
        _TLS_CONTEXT = client_context(verify=False)
    return _TLS_CONTEXT


async def open_session(name: str, addresses: list[str], cfg: SessionSettings) -> Session:
    """A session with MX host ``name`` through the first of its ``addresses`` that answers."""
    try:
        return await _open(name, addresses, cfg, use_tls=cfg.tls != "none")
    except _TlsFailed as exc:
        if cfg.tls != "opportunistic":
            raise
        failed_tls = exc
    try:
        return await _open(name, addresses, cfg, use_tls=False)
    except HostFailed as exc:
        raise HostFailed(exc.reply) from failed_tls


async def _open(name: str, addresses: list[str], cfg: SessionSettings, *, use_tls: bool) -> Session:
    ordered = interleave(addresses, prefer_ipv6=cfg.prefer_ipv6)
    try:
        sock, addr = await connect_first(
            name, ordered, cfg.port, timeout=cfg.connect_timeout, delay=cfg.happy_eyeballs_delay,
        )
    except ConnectError as exc:
        raise HostFailed(exc.reply) from exc
    label = f"{name}[{addr}]" if addr != name else name
    client = aiosmtplib.SMTP(
        hostname=name, sock=sock, local_hostname=cfg.helo, timeout=cfg.timeout, start_tls=False,
    )
    try:
        await client.connect()
    except aiosmtplib.SMTPConnectResponseError as exc:
        sock.close()
        raise HostFailed(_greeting_reply(exc, label)) from exc
    except Exception as exc:  # noqa: BLE001 - closed, timed out
        sock.close()
        raise HostFailed(reply_for(exc, "greeting", label)) from exc
    tls = False
    try:
        try:
            await client.ehlo()
        except aiosmtplib.SMTPHeloError:
            await client.helo()
        if use_tls and client.supports_extension("starttls"):
            try:
                await client.starttls(server_hostname=name, tls_context=_tls_context())
            except (ssl.SSLError, aiosmtplib.SMTPConnectError, aiosmtplib.SMTPServerDisconnected,
                    ConnectionError) as exc:
                raise _TlsFailed(Reply(451, "4.7.5", f"TLS handshake with {label} failed: {exc}")) from exc
            await client.ehlo()
            tls = True
        elif use_tls and cfg.tls == "required":
            raise HostFailed(Reply(451, "4.7.4", f"{label} does not offer STARTTLS (tls: required)"))
    except HostFailed:
        client.close()
        raise
    except Exception as exc:  # noqa: BLE001
        client.close()
        raise HostFailed(reply_for(exc, "EHLO/STARTTLS", label)) from exc
    return Session(client, name, addr, cfg.port, tls)


def _greeting_reply(exc: aiosmtplib.SMTPConnectResponseError, label: str) -> Reply:
    """A refusing greeting (421, 554 ...) as a temporary outcome: the next host may take it.

    Like Postfix (``smtp_skip_5xx_greeting``), even a 5xx greeting only means
    "not this host": when no host takes the mail, it is deferred, not bounced.
    """
    r = reply_for(exc, "greeting", label)
    if r.code >= 500:
        return Reply(451, "4.4.0", f"{label} refused the session: {r}")
    return r


async def close_session(session: Session) -> None:
    """QUIT when possible, close in any case."""
    try:
        if session.client.is_connected:
            await session.client.quit()
    except Exception:  # noqa: BLE001
        session.client.close()

