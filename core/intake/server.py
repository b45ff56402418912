"""Opening the intake listeners: one aiosmtpd server per ``listen`` entry."""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from typing import TYPE_CHECKING, Any

from aiosmtpd.smtp import MISSING, SMTP

from ..errors import ConfigError
from ..settings import ListenSpec
from .auth import RelayAuthenticator
from .data import read_data
from .handler import IntakeHandler

if TYPE_CHECKING:
    from ..gateway import Gateway

log = logging.getLogger("mailpipe.intake")


# A plain <dot-atom@domain> path, the case of nearly every MAIL and RCPT: parsed without the email
# package's full RFC 5322 parser (a measurable share of intake CPU). Anything else takes aiosmtpd's path.
_SIMPLE_PATH = re.compile(r"<([A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
                          r"@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*)>")


class GatewaySMTP(SMTP):
    """aiosmtpd's SMTP protocol with a connection limit answered with 421 and a fast address parser."""

    def __init__(self, handler: IntakeHandler, *, intake: Intake, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._intake = intake
        self._counted = False
        self._refused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self._counted and not self._refused:
            if self._intake.active >= self._intake.max_connections:
                self._refused = True
                log.warning("connection from %s refused: %d connections open",
                            transport.get_extra_info("peername"), self._intake.active)
                transport.write(f"421 4.7.0 {self.hostname} Too many connections, try again later\r\n".encode())
                transport.close()
                return
            self._counted = True
            self._intake.active += 1
            peer = transport.get_extra_info("peername")
            self._intake.gateway.sessions.incoming(self, str(peer[0]) if peer else "?", self.event_handler.listener)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._refused:
            return
        if self._counted:
            self._counted = False
            self._intake.active -= 1
            self._intake.gateway.sessions.closed(self)
        super().connection_lost(error)

    async def _call_handler_hook(self, command: str, *args: Any) -> Any:
        """Keep the live session table (``core.sessions``) at the SMTP command being handled."""
        helo = {"helo": str(args[0])} if command in ("HELO", "EHLO") and args else {}
        self._intake.gateway.sessions.update(self, state=command.lower(), **helo)
        return await super()._call_handler_hook(command, *args)

    async def smtp_DATA(self, arg: str) -> None:
        """DATA as aiosmtpd does it, but reading the message in chunks (see ``data.py``)."""
        if await self.check_helo_needed():
            return
        if await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        result = await read_data(self._reader, size_limit=self.data_size_limit, on_progress=self._reset_timeout)
        if result is None:  # the client went away in the middle
            if self.transport is not None:
                self.transport.close()
            return
        if result.content is None:
            self._set_post_data_state()
            await self.push(result.error or "451 4.3.0 Error")
            return
        self.envelope.content = self.envelope.original_content = result.content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push("250 OK" if status is MISSING else status)

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        m = _SIMPLE_PATH.match(arg.lstrip())
        if m is None or len(m.group(1).partition("@")[0]) > self.local_part_limit > 0:
            return super()._getaddr(arg)
        return m.group(1), arg.lstrip()[m.end():].lstrip()

    def eof_received(self) -> bool | None:
        if self._refused:
            return False
        return super().eof_received()


def server_tls_context(spec: ListenSpec) -> ssl.SSLContext:
    """A server TLS context from the listener's cert and key (TLS 1.2 or newer)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(spec.cert), str(spec.key))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"listen {spec.address}: cannot load cert {spec.cert} / key {spec.key}: {exc}") from exc
    return ctx


class Intake:
    """All intake listeners of one gateway."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.settings = gateway.settings
        self.max_connections = self.settings.intake.max_connections
        self.active = 0
        self.servers: list[asyncio.base_events.Server] = []
        users = self.settings.relay.users
        self.authenticator = RelayAuthenticator(users) if users else None

    def _factory(self, spec: ListenSpec, tls: ssl.SSLContext | None) -> Any:
        handler = IntakeHandler(self.gateway, spec.address)
        kwargs: dict[str, Any] = dict(
            hostname=self.settings.hostname,
            ident="mailpipe",
            data_size_limit=self.settings.intake.max_message_size,
            enable_SMTPUTF8=True,
            decode_data=False,
            timeout=self.settings.intake.timeout,
            auth_required=spec.require_auth,
            # Implicit TLS is TLS from the first byte; aiosmtpd only knows STARTTLS as TLS.
            auth_require_tls=spec.tls != "implicit",
        )
        if spec.tls == "starttls":
            kwargs["tls_context"] = tls
        if self.authenticator is not None:
            kwargs["authenticator"] = self.authenticator
        else:
            kwargs["auth_exclude_mechanism"] = ["LOGIN", "PLAIN"]
        return lambda: GatewaySMTP(handler, intake=self, **kwargs)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for spec in self.settings.listen:
            tls = server_tls_context(spec) if spec.tls != "none" else None
            try:
                server = await loop.create_server(
                    self._factory(spec, tls), spec.host, spec.port,
                    ssl=tls if spec.tls == "implicit" else None, reuse_address=True,
                )
            except OSError as exc:
                await self.stop()
                raise ConfigError(f"listen {spec.address}: cannot listen: {exc.strerror or exc}") from exc
            self.servers.append(server)
            log.info("listening on %s (tls: %s%s)", spec.address, spec.tls,
                     ", login required" if spec.require_auth else "")

    async def stop(self) -> None:
        """Stop accepting connections (sessions in progress are cut at the next close)."""
        for server in self.servers:
            server.close()
        for server in self.servers:
            await server.wait_closed()
        self.servers.clear()
