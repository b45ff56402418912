"""The ``console`` plugin: the web console (Queues, Message Log, Event Log, Sessions, Statistics,
Outgoing Mail) served by ``pipeline serve`` on its own address, behind a login.

Put it anywhere in the chain; it routes and delivers nothing. It serves only
inside ``pipeline serve`` (the CLI's administration commands do not start it); with several
workers (``workers: N``) worker 1 serves it, and its pages cover every worker: the queue
and logs of every worker's queue file, the sessions of every worker, and a retry or a saved
configuration reaches every worker (docs/workers.md). See docs/console.md.
"""

from __future__ import annotations

import asyncio
import contextlib

from mailpipe.core.hookspecs import hookimpl
from mailpipe.core.plugin import Plugin, PluginContext
from mailpipe.core.settings import split_host_port
from mailpipe.core.tasks import cancel_and_wait
from mailpipe.core.workers.slot import current
from mailpipe.plugins.asgi_server import AppServer

from .options import ConsoleOptions

SAMPLE_EVERY = 60.0


class ConsolePlugin(Plugin):
    """Web console: queues, logs, live sessions, statistics and the Outgoing Mail settings."""

    name = "console"
    Options = ConsoleOptions
    reload_in_place = True  # keeps its logins and listener across a reload that leaves its options alone

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.server: AppServer | None = None
        self.console = None
        self._sampler: asyncio.Task[None] | None = None

    @property
    def opts(self) -> ConsoleOptions:
        return self.options  # type: ignore[return-value]

    @hookimpl
    async def startup(self, context: PluginContext) -> None:
        """Called by the gateway once the queue is open: start serving the console (``pipeline serve`` only;
        with several workers, in worker 1)."""
        if context.control is None or not current().primary:
            return
        from .app import Console

        opts = self.opts
        self.console = Console(self)
        cert = context.resolve_path(opts.cert) if opts.cert else None
        key = context.resolve_path(opts.key) if opts.key else None
        host, port = split_host_port(opts.listen)
        self.server = await AppServer.claim(self, host, port, self.console.app, cert=cert, key=key)
        self._sampler = asyncio.create_task(self._sample(), name="console-sampler")
        self.log.info("web console on http%s://%s/", "s" if opts.tls else "", opts.listen)

    async def _sample(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                if self.console is not None and self.context.queue is not None:
                    await self.console.sample()
            await asyncio.sleep(SAMPLE_EVERY)

    @hookimpl
    async def shutdown(self) -> None:
        """Called when the gateway stops (or a reload replaced this instance): stop serving."""
        await cancel_and_wait(self._sampler)
        if self.server is not None:
            await self.server.release(self)
