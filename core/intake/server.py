"""Opening the intake listeners: one aiosmtpd server per ``listen`` entry.

The intake gets narrow collaborators (``IntakeServices``), never the gateway: the
runtime in force (settings and chain, per message), the queue to store in, the event
emitter, the clock, the session table, and a callback for each stored message.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any

from ..errors import ConfigError
from ..settings import ListenSpec, Settings
from ..tlsfiles import server_tls_context
from ..workers.slot import current
from .auth import RelayLogin
from .handler import IntakeHandler, IntakeServices
from .protocol import ConnectionSlots, GatewaySMTP

log = logging.getLogger("mailpipe.intake")


class Intake:
    """All intake listeners of one gateway, opened with the settings in force at ``start``.

    ``reuse_port``: the listeners are bound with ``SO_REUSEPORT``, so the workers of one
    ``pipeline serve`` listen on the same addresses and the kernel spreads the connections.
    """

    def __init__(self, services: IntakeServices, *, reuse_port: bool = False) -> None:
        self.services = services
        self.reuse_port = reuse_port
        self.settings: Settings = services.runtimes.current.settings
        sessions = services.sessions
        limits = self.settings.intake
        slot = current()  # limits are for the whole gateway: one of several workers takes its share
        self.slots = ConnectionSlots(
            slot.share(limits.max_connections) or 1,
            on_open=lambda proto, peer: sessions.incoming(proto, peer, proto.event_handler.listener),
            on_close=sessions.closed,
            on_command=lambda proto, state, helo: sessions.update(
                proto, state=state, **({"helo": helo} if helo is not None else {})),
            per_client=slot.share(limits.max_connections_per_client),
            other_workers=slot.count > 1,
        )
        self.servers: list[asyncio.base_events.Server] = []
        users = self.settings.relay.users
        self.relay_login = RelayLogin(users, limits) if users else None

    @property
    def active(self) -> int:
        """Client connections open now."""
        return self.slots.active

    def busiest(self) -> int:
        """The most client connections open at once since the last call (``intakefirst.py`` asks)."""
        return self.slots.busiest()

    def _factory(self, spec: ListenSpec, tls: ssl.SSLContext | None) -> Any:
        handler = IntakeHandler(self.services, spec.address)
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
        if self.relay_login is None:
            kwargs["auth_exclude_mechanism"] = ["LOGIN", "PLAIN"]
        return lambda: GatewaySMTP(handler, slots=self.slots, data_timeout=self.settings.intake.data_timeout,
                                   relay_login=self.relay_login, **kwargs)

    async def start(self) -> None:
        """Open every listener; ConfigError (and none left open) when one cannot listen."""
        loop = asyncio.get_running_loop()
        for spec in self.settings.listen:
            tls = server_tls_context(spec) if spec.tls != "none" else None
            try:
                server = await loop.create_server(
                    self._factory(spec, tls), spec.host, spec.port,
                    ssl=tls if spec.tls == "implicit" else None, reuse_address=True,
                    reuse_port=self.reuse_port or None,
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
