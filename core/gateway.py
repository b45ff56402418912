"""The gateway: one running mailpipe, wiring queue, runtime, intake and scheduler together.

``open()`` opens the queue and starts the chain's plugins; ``start()`` also opens the
listeners and starts delivering; ``run()`` serves until SIGTERM or SIGINT and then stops
cleanly (SIGHUP reloads the configuration). The gateway hands each part only the
collaborators it needs (see docs/architecture.md): the intake gets ``IntakeServices``,
the scheduler the runtime holder, the delivery queue and a ``Delivery``; the POP3 collector
(``core/collect``) the intake's services and the queue (its ``CollectionLedger``); plugins get a
``PluginContext`` whose ``control`` is this gateway (the ``Control`` protocol).

A gateway may be one worker of several (``workers: N``, ``core/workers``): then it listens
with ``SO_REUSEPORT`` beside the others, the supervisor owns the control socket (an
administrator's "retry now" and a reload made here reach every worker through it), the POP3
collector runs in worker 1 only, and ``worker_sessions`` gives worker 1's console and metrics
the sessions of every worker.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal

from . import control
from .about import version
from .clock import Clock, SystemClock
from .collect.service import Collector
from .collect.status import MailboxStatus
from .config import LoadedConfig
from .delivery import Delivery
from .errors import required
from .events import Event, Events
from .housekeeping import Housekeeping
from .intake import Intake, IntakeServices
from .intake.handoff import AFTER_NEXT_REPLY
from .intakefirst import IntakeFirst
from .message import Message, RecipientState
from .queue import QueueBackend, StoreAndClaim
from .recording import Recorder
from .reload import Reloader, ReloadResult
from .runtime import Runtime, RuntimeHolder, build_runtime, make_context, open_queue
from .scheduler import Scheduler
from .sessions import Sessions
from .workers.link import RELOAD, WAKE, tell_supervisor
from .workers.peers import PeerServer, WorkerSessions
from .workers.slot import WorkerSlot, current

log = logging.getLogger("mailpipe.gateway")
NOT_OPEN = "the gateway is not open"


class Gateway:
    """One mailpipe instance built from a validated configuration."""

    def __init__(self, config: LoadedConfig, clock: Clock | None = None, worker: WorkerSlot | None = None) -> None:
        self.config = config
        self.worker = worker or current()
        self.clock = clock or SystemClock()
        self.events = Events(self.clock, node=config.settings.hostname)
        self.sessions = Sessions(self.clock)
        self._queue: QueueBackend | None = None
        self._runtimes: RuntimeHolder | None = None
        self._scheduler: Scheduler | None = None
        self._reloader: Reloader | None = None
        self.intake: Intake | None = None
        self.collector: Collector | None = None
        self._control: asyncio.DatagramTransport | None = None
        self._peers: PeerServer | None = None
        self._adopted: set[str] = set()  # stored already claimed by the scheduler (the hand-off)
        self._stop = asyncio.Event()
        self.worker_sessions = WorkerSessions(self.worker, config.settings.state_dir, self.sessions)

    # -- the parts, once open -------------------------------------------------------------------

    @property
    def queue(self) -> QueueBackend:
        """The open queue (RuntimeError before ``open``)."""
        return required(self._queue, "the queue is not open")

    @property
    def runtime(self) -> Runtime:
        """The runtime in force (settings, chain, plugins)."""
        return required(self._runtimes, NOT_OPEN).current

    @property
    def scheduler(self) -> Scheduler:
        """The delivery scheduler (RuntimeError before ``open``)."""
        return required(self._scheduler, NOT_OPEN)

    # -- Control (what administration plugins may ask) ------------------------------------------

    @property
    def config_source(self) -> str:
        return self.runtime.config.source if self._runtimes is not None else self.config.source

    def wake(self, *, force: bool = False) -> None:
        """A message was stored (or ``force``: an administrator asked for a run now, in every worker)."""
        if self._scheduler is not None:
            self._scheduler.wake(force=force)
        if force and self.worker.supervised:
            tell_supervisor(self.config.settings.state_dir, WAKE)

    def _woken_by_supervisor(self) -> None:
        """SIGUSR1: another worker or ``pipeline queue retry`` asked every worker for a run now."""
        if self._scheduler is not None:
            self._scheduler.wake(force=True)

    def collections(self) -> list[MailboxStatus]:
        """Each collecting account's status (the console's Internet Mail Accounts); empty before ``open``."""
        return self.collector.statuses() if self.collector is not None else []

    def collect_now(self, account: str | None = None) -> int:
        """Start collecting ``account`` (address or username; all for None) now; how many accounts matched."""
        return self.collector.collect_now(account) if self.collector is not None else 0

    async def reload(self, config: LoadedConfig | None = None) -> ReloadResult:
        """Apply a new configuration (default: the config file again) without dropping mail; see ``reload.py``.

        In a worker, the other workers then reload the configuration file too (through the supervisor).
        """
        result = await required(self._reloader, NOT_OPEN).reload(config)
        if self.worker.supervised:
            tell_supervisor(self.config.settings.state_dir, RELOAD)
        return result

    # -- life -----------------------------------------------------------------------------------

    async def open(self) -> None:
        """Open the queue backend, build the runtime and run every plugin's ``startup``."""
        queue = await open_queue(self.config, make_context(self.config, clock=self.clock, events=self.events))
        self._queue = queue
        context = make_context(self.config, clock=self.clock, events=self.events, queue=queue, control=self)
        runtime, fresh = build_runtime(self.config, context)
        runtimes = self._runtimes = RuntimeHolder(runtime)
        self.events.attach(store=queue.add_event, observe=lambda e: _observe(runtimes, e))
        recorder = Recorder(queue, self.events, self.clock, wake=self.wake)
        intake_first = IntakeFirst(lambda: self.intake.busiest() if self.intake is not None else 0,
                                   lambda: runtimes.current.settings.delivery.intake_first)
        self._scheduler = Scheduler(runtimes, queue, Delivery(recorder, self.events, self.sessions),
                                    Housekeeping(queue, self.events), self.clock, intake_first)
        self._reloader = Reloader(runtimes, self.events, restart_intake=self._restart_intake,
                                  inflight=lambda: list(self.scheduler.inflight.values()), wake=self.wake)
        self.intake = self._new_intake()
        self.collector = Collector(self.intake.services, queue, resolve=context.resolve_path)
        await runtime.chain.each("startup", context=context)

    def _new_intake(self) -> Intake:
        assert self._runtimes is not None
        commit = self._store_and_claim if isinstance(self.queue, StoreAndClaim) else None
        return Intake(IntakeServices(self._runtimes, self.queue, self.events, self.clock, self.sessions,
                                     stored=self._stored, commit=commit), reuse_port=self.worker.supervised)

    async def _store_and_claim(self, message: Message, data: bytes) -> None:
        """The intake's commit: stored already claimed by this gateway's scheduler when it has a slot for it
        (its attempt starts at once, from memory), else stored for a later claim."""
        queue, scheduler = self.queue, self.scheduler
        if not isinstance(queue, StoreAndClaim) or any(r.state is not RecipientState.PENDING
                                                       for r in message.recipients):
            await queue.store(message, data)  # e.g. held by ``accept`` (quarantine): not for delivery now
            return
        lease_until = scheduler.reserve()
        if lease_until is None:
            await queue.store(message, data)
            return
        try:
            claimed = await queue.store_claimed(message, data, scheduler.owner, lease_until)
        except BaseException:
            scheduler.unreserve()
            raise
        self._adopted.add(message.id)
        scheduler.adopt(claimed, after=AFTER_NEXT_REPLY.get())  # a session's first message: intake/handoff.py

    def _stored(self, message: Message) -> None:
        if message.id in self._adopted:  # already being delivered: nothing for the scheduler to look for
            self._adopted.discard(message.id)
            return
        self.wake()

    async def _restart_intake(self) -> bool:
        """Close the listeners and open them with the settings in force; False when none were open."""
        if self.intake is None or not self.intake.servers:
            return False
        await self.intake.stop()
        intake = self._new_intake()
        try:
            await intake.start()
        finally:
            self.intake = intake
        return True

    async def close(self) -> None:
        """Run every plugin's ``shutdown`` and close the queue."""
        try:
            if self._reloader is not None:
                await self._reloader.wait_retired()
            if self._runtimes is not None:
                await self._runtimes.current.chain.each("shutdown")
        finally:
            self.events.attach()
            if self._queue is not None:
                await self._queue.close()
                self._queue = None

    async def start(self) -> None:
        """Open everything and begin accepting and delivering mail."""
        self.config.settings.state_dir.mkdir(parents=True, exist_ok=True)
        await self.open()
        recovered = await self.queue.recover(self.scheduler.owner)
        if recovered:
            self.events.emit("queue.recovered",
                             f"{recovered} message(s) left in flight by a stopped process are due again")
        self.queue.subscribe(self.wake)
        assert self.intake is not None
        await self.before_listening()
        await self.intake.start()
        state_dir = self.config.settings.state_dir
        if self.worker.supervised:  # the supervisor owns the control socket; the others ask this worker
            self._peers = PeerServer(state_dir, self.worker, self.sessions)
            await self._peers.start()
        else:
            self._control = await control.listen(state_dir, lambda: self.wake(force=True))
        self.scheduler.start()
        assert self.collector is not None
        if self.worker.primary:
            self.collector.start()
        runtime = self.runtime
        who = f" as {self.worker}" if self.worker.supervised else ""
        self.events.emit(
            "gateway.started",
            f"mailpipe {version()} started (pid {os.getpid()}{who}): config {self.config.source}, queue "
            f"{self.queue.location}, listening on {', '.join(s.address for s in runtime.settings.listen)}, chain: "
            f"{', '.join(p.instance_name for p in runtime.plugins) or '(empty)'}",
            config=self.config.source, version=version(), pid=os.getpid(), queue=self.queue.location,
            **({"worker": self.worker.index} if self.worker.supervised else {}),
        )

    async def before_listening(self) -> None:
        """Called by ``start`` once the queue is open and the plugins started, before the listeners open.

        Nothing by default; a worker waits here until every worker is as far (``core/workers/link.py``).
        """

    @property
    def stopping(self) -> asyncio.Event:
        """Set once SIGTERM or SIGINT asked this gateway to stop."""
        return self._stop

    async def stop(self) -> None:
        """Stop accepting, let deliveries in flight finish (bounded), leave the rest queued."""
        if self.intake is not None:
            await self.intake.stop()
        if self._control is not None:
            self._control.close()
        if self._peers is not None:
            await self._peers.stop()
        if self.collector is not None:
            await self.collector.stop()
        await self.scheduler.stop(self.runtime.settings.delivery.shutdown_grace)
        self.events.emit("gateway.stopped", "mailpipe stopped")
        await self.close()

    def request_stop(self) -> None:
        self._stop.set()

    def _reload_on_signal(self) -> None:
        """SIGHUP (from an administrator, or from the supervisor for every worker): reload this process only."""
        if self._reloader is not None:
            asyncio.ensure_future(self._reloader.reload_logged())

    async def run(self) -> None:
        """Serve until SIGTERM/SIGINT."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self._reload_on_signal)
        if self.worker.supervised:
            loop.add_signal_handler(signal.SIGUSR1, self._woken_by_supervisor)
        await self.start()
        try:
            await self._stop.wait()
        finally:
            log.info("stopping")
            await self.stop()


def _observe(runtimes: RuntimeHolder, event: Event) -> None:
    """Hand an event to every plugin's ``event`` hook of the runtime in force."""
    runtimes.current.chain.notify("event", event=event)
