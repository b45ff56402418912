"""The ``smarthost`` plugin: "send messages through ISP's mail server".

Routes every recipient it is offered (or only those of ``domains``) to the
configured server and delivers there. This first version connects once per
message and does not log in; authentication modes, several servers and
connection reuse are built on top of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from mailpipe.core.hookspecs import hookimpl
from mailpipe.core.message import Credentials, Message, RecipientResult, Route
from mailpipe.core.plugin import Plugin
from mailpipe.core.settings import Duration, Strict
from mailpipe.plugins.outbound.connection import ConnectFailed, Endpoint, close_quietly, open_connection
from mailpipe.plugins.outbound.tls import client_context
from mailpipe.plugins.outbound.transaction import send


class SmarthostOptions(Strict):
    """Options of ``chain: - smarthost: {...}`` (the seed page's "Server" and friends)."""

    server: str
    port: int | None = Field(None, ge=1, le=65535, description="default: delivery.port")
    tls: Literal["none", "starttls", "implicit"] = "starttls"
    ca_file: Path | None = None
    verify: bool = True
    timeout: Duration | None = None
    domains: list[str] = Field(default_factory=list, description="only these recipient domains (default: all)")

    @field_validator("server")
    @classmethod
    def _server(cls, value: str) -> str:
        if not value.strip() or " " in value.strip():
            raise ValueError(f"expected a host name or address, got {value!r}")
        return value.strip()


class SmarthostPlugin(Plugin):
    """Delivers through the ISP's mail server (smarthost)."""

    name = "smarthost"
    Options = SmarthostOptions

    @property
    def opts(self) -> SmarthostOptions:
        return self.options  # type: ignore[return-value]

    def endpoint(self) -> Endpoint:
        port = self.opts.port or self.context.settings.delivery.port
        return Endpoint(self.opts.server, port, self.opts.tls)

    def takes(self, recipient: str) -> bool:
        if not self.opts.domains:
            return True
        domain = recipient.rpartition("@")[2].lower()
        return domain in {d.lower() for d in self.opts.domains}

    @hookimpl
    def route(self, message: Message, recipients: list[str]) -> list[Route] | None:
        """All recipients (of ``domains``, when set) leave through the smarthost, as one route."""
        mine = [r for r in recipients if self.takes(r)]
        if not mine:
            return None
        ep = self.endpoint()
        return [Route(self.instance_name, "smarthost", f"{ep.host}:{ep.port}", mine)]

    @hookimpl
    def explain_route(self, route: Route) -> dict[str, Any] | None:
        """For ``pipeline route``: the server, port and TLS mode."""
        if route.plugin != self.instance_name:
            return None
        ep = self.endpoint()
        return {"server": ep.host, "port": ep.port, "tls": ep.tls}

    @hookimpl
    async def deliver(self, message: Message, route: Route, credentials: Credentials) -> list[RecipientResult] | None:
        """One SMTP transaction with the smarthost for all recipients of the route."""
        if route.plugin != self.instance_name:
            return None
        ep = self.endpoint()
        timeout = self.opts.timeout or self.context.settings.delivery.timeout
        ctx = client_context(verify=self.opts.verify, ca_file=self.opts.ca_file) if ep.tls != "none" else None
        label = f"smarthost:{ep.label}"
        try:
            client = await open_connection(ep, helo=self.context.settings.hostname, timeout=timeout, tls_context=ctx)
        except ConnectFailed as exc:
            return RecipientResult.for_all(route.recipients, exc.reply, remote_host=ep.host, route=label)
        try:
            data = await message.body()
            return await send(client, message, route.recipients, data, host=ep.label, addr=None, route=label)
        finally:
            await close_quietly(client)

