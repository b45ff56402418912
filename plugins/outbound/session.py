"""Opening an outbound SMTP session: connect, greeting, EHLO (HELO fallback), STARTTLS, EHLO, AUTH.

``open_session`` connects to ``host:port`` itself, or takes the socket a
``Connector`` made (direct races a host's addresses). Every failure closes what
was opened and is raised as ``OutboundError`` carrying the reply that stands
for it; the caller then tries its next host or gives every recipient that reply.

After a TLS handshake the session records the protocol version and, when the policy
has a ``check``, its ``Verdict`` on the presented chain (an untrusted verdict under
``required``/``implicit`` is raised as ``CertificateRejected``).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Protocol

import aiosmtplib

from mailpipe.core.errors import Reply

from .replies import OutboundError, no_starttls, reply_for, short, tls_failed
from .tls import TlsPolicy, Verdict, peer_chain

#: Makes a connected TCP socket; returns it and the address it reached (raises ``OutboundError``).
Connector = Callable[[], Awaitable[tuple[socket.socket, str]]]


class Login(Protocol):
    """Logs a connected, greeted client in (SMTP AUTH through aiosmtplib); returns the mechanism used.

    ``host`` names the server for replies. Raises ``OutboundError`` (with
    ``next_host`` false when the login itself was refused).
    """

    def __call__(self, client: aiosmtplib.SMTP, *, host: str) -> Awaitable[str]: ...


@dataclass(frozen=True)
class ClientSettings:
    """How sessions are opened: the EHLO name, the time limit per step, the TLS policy."""

    helo: str
    timeout: float
    tls: TlsPolicy


@dataclass(eq=False)
class Session:
    """A connected, greeted (and, when asked, logged-in) SMTP client ready for MAIL FROM.

    ``peer`` names the server in replies and results (the MX host name, or
    ``host:port`` for a server reached by name); ``address`` is the address a
    connector reached. ``tls_version`` is the negotiated protocol (``TLSv1.3``),
    ``verdict`` the policy's ``check`` on the server's chain (None without a
    check), ``tls_error`` why an opportunistic session runs in plain text after
    a failed handshake. ``key``, ``messages``, ``idle_since`` and ``expiry`` are
    kept by the connection pool; so is ``probe``: set on a kept session the pool hands out
    unprobed, the seconds the RSET that opens its next transaction may take (``transaction``).
    """

    client: aiosmtplib.SMTP
    peer: str
    address: str | None = None
    tls: bool = False
    mechanism: str | None = None
    tls_version: str | None = None
    verdict: Verdict | None = None
    tls_error: str | None = None
    key: Hashable = None
    messages: int = 0
    idle_since: float = field(default_factory=time.monotonic)
    expiry: asyncio.TimerHandle | None = None
    probe: float | None = None

    async def quit(self) -> None:
        """QUIT when possible, close in any case (raises only when cancelled)."""
        try:
            if self.client.is_connected:
                await self.client.quit()
        except Exception:  # noqa: BLE001 - closing anyway
            pass
        finally:
            self.client.close()


class _HandshakeFailed(OutboundError):
    """The STARTTLS handshake failed (opportunistic TLS then tries plain text once)."""


class CertificateRejected(OutboundError):
    """The policy's ``check`` did not trust the server's chain (451 4.7.5); ``verdict`` says why.

    ``address`` and ``local_address`` are the two ends of the connection (for TLS reports).
    """

    def __init__(self, verdict: Verdict, host: str, label: str, *, address: str | None = None,
                 local_address: str | None = None) -> None:
        super().__init__(Reply(451, "4.7.5", f"TLS certificate of {label} not trusted: {verdict.text}"), host=host)
        self.verdict = verdict
        self.address = address
        self.local_address = local_address


async def open_session(
    host: str, port: int, settings: ClientSettings, *, connect: Connector | None = None, login: Login | None = None,
) -> Session:
    """A session with ``host``: connected (by ``connect`` when given), greeted, EHLO, TLS per policy, logged in.

    Called by the delivery plugins when the pool has no idle session. Raises
    ``OutboundError``; with opportunistic TLS a failed handshake is followed by
    one more connection in plain text, as Postfix does.
    """
    try:
        return await _open(host, port, settings, connect, login, starttls=settings.tls.mode != "none")
    except _HandshakeFailed as failed:
        if settings.tls.mode != "opportunistic":
            raise
        reason = failed.reply.text
    session = await _open(host, port, settings, connect, login, starttls=False)
    session.tls_error = reason
    return session


async def _open(
    host: str, port: int, settings: ClientSettings, connect: Connector | None, login: Login | None, *, starttls: bool,
) -> Session:
    policy = settings.tls
    sock, address = await connect() if connect is not None else (None, None)
    peer = host if connect is not None else f"{host}:{port}"
    label = f"{peer}[{address}]" if address and address != host else peer
    implicit = policy.mode == "implicit"
    client = aiosmtplib.SMTP(
        hostname=(policy.server_name or host) if sock is not None else host, port=None if sock else port,
        sock=sock, local_hostname=settings.helo, timeout=settings.timeout, start_tls=False,
        use_tls=implicit, tls_context=policy.context if implicit else None,
    )
    session = Session(client, peer, address, tls=implicit)
    step = "greeting" if sock is not None else "connect"
    try:
        await client.connect()
        step = "EHLO"
        try:
            await client.ehlo()
        except aiosmtplib.SMTPHeloError:
            await client.helo()
        if starttls and not implicit and client.supports_extension("starttls"):
            step = "STARTTLS"
            try:
                await client.starttls(server_hostname=policy.server_name or host, tls_context=policy.context)
            except (ssl.SSLError, aiosmtplib.SMTPConnectError, aiosmtplib.SMTPServerDisconnected,
                    ConnectionError) as exc:
                raise _HandshakeFailed(tls_failed(exc, label), host=peer) from exc
            step = "EHLO"
            await client.ehlo()
            session.tls = True
        elif policy.mode == "required":
            raise OutboundError(no_starttls(label), host=peer)
        if session.tls:
            _check_peer(session, policy, policy.server_name or host, label)
        if login is not None:
            step = "AUTH"
            session.mechanism = await login(client, host=label)
    except BaseException as exc:
        # A transport owns the socket and closes it itself (later, in the loop): closing the socket
        # here would free its descriptor while the loop still watches it for the old transport.
        owned = client.transport is not None
        client.close()
        if sock is not None and not owned:
            sock.close()
        if isinstance(exc, OutboundError) or not isinstance(exc, Exception):
            raise
        raise OutboundError(reply_for(exc, step, label), host=peer) from exc
    return session


def _check_peer(session: Session, policy: TlsPolicy, name: str, label: str) -> None:
    """Note the TLS version; run the policy's ``check`` (raising ``CertificateRejected`` when it must)."""
    ssl_object = session.client.get_transport_info("ssl_object")
    if ssl_object is None:
        return
    session.tls_version = ssl_object.version()
    if policy.check is None:
        return
    try:
        verdict = policy.check(peer_chain(ssl_object), name)
    except Exception as exc:  # noqa: BLE001 - a broken check must not pass a certificate
        verdict = Verdict(False, f"the check failed: {short(exc)}", "validation-failure")
    session.verdict = verdict
    if not verdict.trusted and policy.mode in ("required", "implicit"):
        sockname = session.client.get_transport_info("sockname")
        raise CertificateRejected(verdict, session.peer, label, address=session.address,
                                  local_address=str(sockname[0]) if sockname else None)
