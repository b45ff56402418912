"""mailpipe-faulty: a third-party plugin that breaks on purpose, to test how the gateway contains it.

In YAML: ``chain: [{faulty: {domain: broken.test, raise_in: [deliver], hang_in: [on_failure]}}, ...]``.
It routes the recipients of ``domain`` to itself. In the hooks named in
``raise_in`` it raises ``RuntimeError("faulty plugin broke in HOOK")``; in those
named in ``hang_in`` it never returns. It acts only on messages that have a
recipient of ``domain`` (``accept``: whose Subject contains ``trigger``), so
the rest of the mail shows that the gateway keeps serving.
"""

from __future__ import annotations

import asyncio
from typing import Literal

from pydantic import BaseModel, ConfigDict

from mailpipe.core.errors import Reply
from mailpipe.core.hookspecs import hookimpl
from mailpipe.core.message import Credentials, Message, RecipientResult, Route, SessionInfo
from mailpipe.core.plugin import Plugin

Hook = Literal["accept", "route", "authenticate", "deliver", "on_failure"]


class FaultyOptions(BaseModel):
    """Options of the faulty plugin."""

    model_config = ConfigDict(extra="forbid")
    domain: str
    raise_in: list[Hook] = []
    hang_in: list[Hook] = []
    trigger: str = "break-me"


class FaultyPlugin(Plugin):
    """Routes one domain to itself and raises or hangs in the hooks it is told to (for tests)."""

    name = "faulty"
    Options = FaultyOptions

    @property
    def opts(self) -> FaultyOptions:
        return self.options  # type: ignore[return-value]

    def mine(self, address: str) -> bool:
        return address.rpartition("@")[2].lower() == self.opts.domain.lower()

    async def misbehave(self, hook: str) -> None:
        if hook in self.opts.raise_in:
            raise RuntimeError(f"faulty plugin broke in {hook}")
        if hook in self.opts.hang_in:
            await asyncio.Event().wait()  # never set: hangs until the gateway's time bound cancels it

    @hookimpl
    async def accept(self, message: Message, session: SessionInfo) -> None:
        """Breaks for messages whose header block contains ``trigger``."""
        head = (await message.body()).split(b"\r\n\r\n", 1)[0]
        if self.opts.trigger.encode() in head:
            await self.misbehave("accept")

    @hookimpl
    async def route(self, message: Message, recipients: list[str]) -> list[Route] | None:
        """Takes the recipients of ``domain``."""
        mine = [r for r in recipients if self.mine(r)]
        if not mine:
            return None
        await self.misbehave("route")
        return [Route(self.instance_name, "faulty", self.opts.domain, mine)]

    @hookimpl
    async def authenticate(self, message: Message, route: Route) -> Credentials | None:
        if route.plugin != self.instance_name:
            return None
        await self.misbehave("authenticate")
        return Credentials.none()

    @hookimpl
    async def deliver(self, message: Message, route: Route, credentials: Credentials) -> list[RecipientResult] | None:
        """Never delivers for real: breaks, or (told nothing) refuses temporarily with 451 4.3.2."""
        if route.plugin != self.instance_name:
            return None
        await self.misbehave("deliver")
        return RecipientResult.for_all(route.recipients, Reply(451, "4.3.2", "faulty plugin: not today"),
                                       route=f"faulty:{self.opts.domain}")

    @hookimpl
    async def on_failure(self, message: Message, result: RecipientResult) -> None:
        """Breaks for recipients of ``domain``; leaves every other decision to the next plugin."""
        if self.mine(result.recipient):
            await self.misbehave("on_failure")
