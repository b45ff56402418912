"""The gateway: one running mailpipe, wiring queue, chain, intake and scheduler.

``open()`` is enough for administration (the CLI's queue commands);
``start()`` also opens the listeners and starts delivering; ``run()`` serves
until SIGTERM or SIGINT and then stops cleanly.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import TYPE_CHECKING

from . import control
from .chain import Chain
from .clock import Clock, SystemClock
from .config import LoadedConfig
from .errors import ConfigError
from .events import Events
from .intake import Intake
from .message import Decision, Message, RecipientResult
from .plugin import PluginContext
from .queue import QueueBackend
from .scheduler import Scheduler
from .sessions import Sessions

if TYPE_CHECKING:
    from .reload import ReloadResult

log = logging.getLogger("mailpipe.gateway")


class Gateway:
    """One mailpipe instance built from a validated configuration."""

    def __init__(self, config: LoadedConfig, clock: Clock | None = None) -> None:
        self.config = config
        self.settings = config.settings
        self.clock = clock or SystemClock()
        self.events = Events(self.clock)
        self.context = PluginContext(self.settings, config.base_dir, self.clock, self.events, gateway=self)
        self.sessions = Sessions(self.clock)
        self.queue_plugin = config.queue.cls(config.queue.options, self.context)
        self.plugins = [spec.cls(spec.options, self.context, instance_name=spec.name) for spec in config.chain]
        self.chain = Chain(self.plugins)
        self.events.chain = self.chain
        self._queue: QueueBackend | None = None
        self.scheduler = Scheduler(self)
        self.intake = Intake(self)
        self._control: asyncio.DatagramTransport | None = None
        self._stop = asyncio.Event()

    @property
    def queue(self) -> QueueBackend:
        if self._queue is None:
            raise RuntimeError("the queue is not open")
        return self._queue

    async def open_queue_only(self) -> None:
        """Open the queue backend alone (administration commands)."""
        backend = await Chain([self.queue_plugin]).first("open_queue", context=self.context)
        if backend is None:
            raise ConfigError(f"queue plugin {self.config.queue.name!r} did not provide a queue")
        await backend.open()
        self._queue = backend
        self.context.queue = backend
        self.events.queue = backend

    async def open(self) -> None:
        """Open the queue backend and run every plugin's ``startup``."""
        await self.open_queue_only()
        await self.chain.each("startup", context=self.context)

    async def close(self) -> None:
        """Run every plugin's ``shutdown`` and close the queue."""
        try:
            await self.chain.each("shutdown")
        finally:
            if self._queue is not None:
                await self._queue.close()
                self._queue = None

    async def start(self) -> None:
        """Open everything and begin accepting and delivering mail."""
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        await self.open()
        recovered = await self.queue.recover(self.scheduler.owner)
        if recovered:
            self.events.emit("queue.recovered",
                             f"{recovered} message(s) left in flight by a stopped process are due again")
        await self.intake.start()
        self._control = await control.listen(self.settings.state_dir, lambda: self.scheduler.wake(force=True))
        self.scheduler.start()
        self.events.emit(
            "gateway.started",
            f"mailpipe started: {self.config.source}, listening on "
            f"{', '.join(s.address for s in self.settings.listen)}, chain: "
            f"{', '.join(p.instance_name for p in self.plugins) or '(empty)'}",
            config=self.config.source,
        )

    async def stop(self) -> None:
        """Stop accepting, let deliveries in flight finish (bounded), leave the rest queued."""
        await self.intake.stop()
        if self._control is not None:
            self._control.close()
        await self.scheduler.stop(self.settings.delivery.shutdown_grace)
        self.events.emit("gateway.stopped", "mailpipe stopped")
        await self.close()

    def request_stop(self) -> None:
        self._stop.set()

    async def reload(self, config: LoadedConfig | None = None) -> ReloadResult:
        """Apply a new configuration (default: the config file again) without dropping mail; see ``reload.py``."""
        from .reload import reload

        return await reload(self, config)

    def _reload_on_signal(self) -> None:
        from .reload import reload_logged

        asyncio.ensure_future(reload_logged(self))

    async def run(self) -> None:
        """Serve until SIGTERM/SIGINT."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self._reload_on_signal)
        await self.start()
        try:
            await self._stop.wait()
        finally:
            log.info("stopping")
            await self.stop()

    # -- called by the intake and the scheduler -----------------------------------------------

    def message_stored(self, message: Message) -> None:
        """A message was committed by the intake: the scheduler delivers it now if it may send now."""
        self.scheduler.wake()

    async def notices(
        self, message: Message, results: list[RecipientResult], decisions: dict[str, Decision], now: float
    ) -> list[tuple[Message, bytes]]:
        """Messages to the sender about failed recipients (delivery status notifications).

        Called by the scheduler after each attempt, before it is recorded; the
        queue stores what this returns in the same transaction. The rules are
        in ``bounces.py``: at most one report per message and attempt, never to
        the null sender, never about a report.
        """
        from . import bounces

        return await bounces.notices(self.settings.hostname, message, results, decisions, now)
