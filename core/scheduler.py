"""The delivery loop: claims due messages and runs their attempts, at most ``delivery.concurrency`` at once.

It never polls the queue in a tight loop: it sleeps until the earliest next attempt,
a new message (``wake``), a ``pipeline queue retry`` poke (``wake(force=True)``), the
next schedule window (``windows.py``) or, at the latest, a minute (so changes made by
other processes are seen). Each pass first lets ``housekeeping.py`` prune history.
One message's attempt is ``delivery.py``'s; the scheduler only decides when, and with
which runtime (the one in force when the attempt starts).

Claims are leases: a claimed message is this scheduler's until released, and leases
of attempts still in progress are renewed, so no other scheduler on the same queue
takes them; a scheduler that died leaves its leases to ``recover`` at the next start.

The hand-off: a message the intake is storing may be claimed by this scheduler in the
same transaction (``reserve``, then the queue's ``store_claimed``, then ``adopt``) when
mail is sent immediately and more than a quarter of the slots are free (the rest is left
to claims, so mail that waits is not starved by new mail under load); its attempt starts
from the message in memory, with no claim transaction and no read of its body. For a
session's first message the intake asks that the attempt wait for the client's next reply
(``core/intake/handoff.py``: a client that sends one message per connection then has its
``QUIT`` answered before the attempt's first steps run, and, when it was its worker's only
client, its next connection is not served by a worker busy with the attempt); it starts after
``START_WITHIN`` at the latest.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable

from .clock import Clock
from .delivery import Delivery
from .housekeeping import Housekeeping
from .intakefirst import IntakeFirst
from .message import Message
from .queue import DeliveryQueue, QueueError
from .runtime import RuntimeHolder
from .settings import DeliverySettings
from .windows import Windows
from .workers.slot import current

log = logging.getLogger("mailpipe.scheduler")
SAFETY_WAKE = 60.0
LEASE_MARGIN = 300.0
HOLD_MESSAGES = 1000
"""New messages a worker keeps claimed in memory while the intake goes first (then: stored for a claim)."""
HOLD_BYTES = 16 * 1024 * 1024
"""... and their bytes at most (a body up to the queue's inline limit is held with its message)."""
START_WITHIN = 0.05
"""Seconds at most a handed-off attempt waits for its client's next reply (``adopt``'s ``after``)."""


def new_owner() -> str:
    """A lease owner name unique to this process and start: ``host:pid:token``."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class Scheduler:
    """Delivery runs for one gateway."""

    def __init__(self, runtimes: RuntimeHolder, queue: DeliveryQueue, delivery: Delivery,
                 housekeeping: Housekeeping, clock: Clock, intake_first: IntakeFirst | None = None) -> None:
        self.runtimes = runtimes
        self.queue = queue
        self.delivery = delivery
        self.housekeeping = housekeeping
        self.clock = clock
        self.owner = new_owner()
        self.windows = Windows(self._settings)
        self.inflight: dict[str, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._reserved = 0  # slots promised to messages the intake is storing (the hand-off)
        self._held: collections.deque[Message] = collections.deque()  # handed off while the intake goes first
        self._held_bytes = 0
        # handed off, waiting for their client's next reply (or START_WITHIN): id -> message, fallback timer
        self._waiting: dict[str, tuple[Message, asyncio.TimerHandle]] = {}
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._renewed = clock.now()
        # As of the last look at the queue, nothing was due before this clock time (0: look again). Only a
        # finished attempt wakes the loop without calling wake(); it then need not ask the queue again.
        self._idle_until = 0.0
        self._wakes = 0  # counts wake() calls: a look that a wake-up overtook is not trusted
        self.intake_first = intake_first

    def _settings(self) -> DeliverySettings:
        return self.runtimes.current.settings.delivery

    def _occupied(self) -> int:
        """Slots taken: attempts running, and handed-off attempts about to start."""
        return len(self.inflight) + len(self._waiting)

    def _concurrency(self) -> int:
        """``delivery.concurrency`` is for the whole gateway: one of several workers runs its share; one at a
        time while the intake goes first (``intakefirst.py``)."""
        share = current().share(self._settings().concurrency) or 1
        return share if self.intake_first is None else self.intake_first.concurrency(share)

    @property
    def lease_seconds(self) -> float:
        """How long a claim holds without renewal: longer than any one ``deliver`` may take."""
        return self.runtimes.current.chain.timeouts["deliver"] + LEASE_MARGIN

    # -- control ----------------------------------------------------------------------------

    def wake(self, *, force: bool = False) -> None:
        """Look for due work now; ``force`` starts a run even outside the schedule."""
        if force:
            self.windows.force()
        self._look_again()
        self._wake.set()

    def _look_again(self) -> None:
        """Something may be due now (a message stored, a run forced, an attempt recorded a deferral or was
        cut short): the next pass asks the queue instead of trusting its last answer."""
        self._idle_until = 0.0
        self._wakes += 1

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="mailpipe-scheduler")
        if self.intake_first is not None:
            self.intake_first.start(on_release=self._intake_first_over)

    async def stop(self, grace: float) -> None:
        """Start nothing new; wait up to ``grace`` seconds for deliveries in flight, then cut them."""
        self._stopping = True
        self._wake.set()
        if self.intake_first is not None:
            await self.intake_first.stop()
        if self._task is not None:
            await self._task
        if self.inflight:
            log.info("waiting up to %.0fs for %d deliveries in flight", grace, len(self.inflight))
            _, pending = await asyncio.wait(list(self.inflight.values()), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
                log.warning("%d deliveries cut short by shutdown; they stay queued", len(pending))
        for _, timer in self._waiting.values():
            timer.cancel()
        waiting, self._waiting = [message for message, _ in self._waiting.values()], {}
        held, self._held, self._held_bytes = [*waiting, *self._held], collections.deque(), 0
        for message in held:  # never attempted: due again at once, for the next start or another node
            await self.queue.release(message.id, self.owner)

    # -- the hand-off ---------------------------------------------------------------------

    def reserve(self) -> float | None:
        """Called by the gateway before it stores a new message: a slot for it, and the lease end to store.

        None when the message is to be stored for a later claim: the loop is not running or is
        stopping, mail waits for a schedule window, or no more than a quarter of the slots is free
        — unless the intake goes first (``intakefirst.py``) and the held backlog has room: the
        message is then stored claimed and held in memory until a slot is free (``adopt``), so the
        burst's mail is delivered after it without a claim transaction or a read of its body.
        A reservation ends with ``adopt`` (stored) or ``unreserve`` (not stored).
        """
        concurrency = self._concurrency()
        if self._task is None or self._stopping or not self._settings().send_immediately:
            return None
        free = concurrency - self._occupied() - self._reserved
        if free <= concurrency // 4 and not self._may_hold():
            return None
        self._reserved += 1
        return self.clock.now() + self.lease_seconds

    def _may_hold(self) -> bool:
        return (self.intake_first is not None and self.intake_first.active
                and len(self._held) + self._reserved < HOLD_MESSAGES and self._held_bytes < HOLD_BYTES)

    def unreserve(self) -> None:
        """The reserved message was not stored: its slot is free again."""
        self._reserved = max(0, self._reserved - 1)

    def adopt(self, message: Message, after: Callable[[Callable[[], None]], None] | None = None) -> None:
        """The reserved message is stored, claimed by this scheduler: start its attempt now — or, given
        ``after`` (``core/intake/handoff.py``), when its client has had its next reply, at most
        ``START_WITHIN`` later — or hold it until a slot is free (the intake goes first)."""
        self.unreserve()
        if self._occupied() < self._concurrency() and not self._held:
            if after is None:
                self._start(message)
                return
            timer = asyncio.get_running_loop().call_later(START_WITHIN, self._start_waiting, message.id)
            self._waiting[message.id] = (message, timer)
            after(lambda: self._start_waiting(message.id))
            return
        self._held.append(message)
        self._held_bytes += message.size
        self._wake.set()

    def _start_waiting(self, message_id: str) -> None:
        """A handed-off attempt's wait is over (its client's next reply, or the timer): start it once."""
        if self._stopping:  # stop() releases it
            return
        entry = self._waiting.pop(message_id, None)
        if entry is None:
            return
        message, timer = entry
        timer.cancel()
        self._start(message)

    def _start_all_waiting(self) -> None:
        for message_id in list(self._waiting):
            self._start_waiting(message_id)

    def _intake_first_over(self) -> None:
        """The burst is over (or had its time): deliveries take their full share, held messages first."""
        if self._held:
            log.info("%d messages held during the burst are delivered now", len(self._held))
        self.wake()

    def _start_held(self) -> None:
        """Start held messages, oldest first, while slots are free."""
        while self._held and self._occupied() < self._concurrency() and not self._stopping:
            message = self._held.popleft()
            self._held_bytes -= message.size
            self._start(message)

    # -- the loop -------------------------------------------------------------------------

    async def _loop(self) -> None:
        while not self._stopping:
            now = self.clock.now()
            try:
                await self.housekeeping.run(now)
                await self._renew(now)
                timeout = SAFETY_WAKE
                if self.windows.may_send(now):
                    self._start_held()
                    free = self._concurrency() - self._occupied()
                    # Claim in batches: under load, a claim per finished delivery would cost the queue
                    # one job each; waiting until a quarter of the slots is free costs little latency.
                    if now < self._idle_until:  # a finished attempt woke us; nothing in the queue is due yet
                        if not self._occupied():
                            self.windows.run_ended(now)
                        timeout = self._timeout(now, self._idle_until)
                    elif free >= max(1, self._concurrency() // 4) or not self._occupied():
                        started = await self.run_due(now)
                        if started < free:  # nothing more is due now: sleep until the next due time
                            if not started and not self._occupied():
                                self.windows.run_ended(now)
                            timeout = await self._sleep_time(now)
                else:
                    timeout = await self._sleep_time(now)
            except QueueError as exc:  # the queue's own outage logging says more; one line here
                log.warning("delivery paused: %s; trying again in %ss", exc, SAFETY_WAKE)
                timeout = SAFETY_WAKE
            except Exception:
                log.exception("scheduler run failed; trying again in %ss", SAFETY_WAKE)
                timeout = SAFETY_WAKE
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass
            self._wake.clear()

    async def _sleep_time(self, now: float) -> float:
        wakes = self._wakes
        nxt = await self.queue.next_due()
        if wakes == self._wakes:  # no wake-up while the queue answered: trust the answer until then
            # At most SAFETY_WAKE ahead: the loop still looks at the queue that often (mail made due by
            # nobody's wake-up, e.g. a dead node's leases running out, is found as before).
            self._idle_until = now + SAFETY_WAKE if nxt is None else min(nxt, now + SAFETY_WAKE)
        return self._timeout(now, nxt)

    def _timeout(self, now: float, nxt: float | None) -> float:
        """How long the loop may sleep when the next recipient is due at ``nxt`` (None: none queued)."""
        timeout = SAFETY_WAKE if nxt is None else min(SAFETY_WAKE, max(0.0, nxt - now))
        if self.windows.waiting_for_window:
            window = self.windows.next_window(now)
            timeout = SAFETY_WAKE if window is None else max(0.0, min(SAFETY_WAKE, window - now))
        if self._occupied() >= self._concurrency():
            timeout = SAFETY_WAKE  # a finishing delivery wakes us
        return timeout

    async def _renew(self, now: float) -> None:
        """Extend the leases of attempts in progress and of held messages, a third of a lease after the last
        renewal."""
        lease = self.lease_seconds
        if not (self._occupied() or self._held) or now - self._renewed < lease / 3:
            return
        self._renewed = now
        await self.queue.renew(self.owner, [*self.inflight, *self._waiting, *(m.id for m in self._held)],
                               now + lease)

    async def tick(self, now: float | None = None, timeout: float = 60.0) -> int:
        """One pass of the delivery loop at ``now`` (clock time), waited for; return messages started.

        Honours the schedule exactly as the running loop does (nothing starts outside a
        window unless forced) and prunes history when an hour has passed;
        ``run_until_idle`` ignores the schedule. For tests that drive time through the
        clock, and for one-shot runs.
        """
        now = self.clock.now() if now is None else now
        await self.housekeeping.run(now)
        if not self.windows.may_send(now):
            return 0
        deadline = time.monotonic() + timeout
        total = 0
        self._start_all_waiting()
        while True:
            started = await self.run_due(now)
            total += started
            if not started and not self.inflight:
                self.windows.run_ended(now)
                return total
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("deliveries did not finish in time")
            if self.inflight:
                await asyncio.wait(list(self.inflight.values()), timeout=left)

    async def run_due(self, now: float | None = None) -> int:
        """Claim due messages up to the free capacity and start their attempts; return how many."""
        now = self.clock.now() if now is None else now
        self._start_held()
        capacity = self._concurrency() - self._occupied() - self._reserved
        if capacity <= 0 or self._stopping:
            return 0
        messages = await self.queue.claim_due(now, capacity, self.owner, now + self.lease_seconds)
        for message in messages:
            self._start(message)
        return len(messages)

    def _start(self, message: Message) -> None:
        task = asyncio.create_task(self._attempt(message), name=f"deliver-{message.id}")
        self.inflight[message.id] = task
        task.add_done_callback(lambda _t, mid=message.id: self._done(mid))

    async def _attempt(self, message: Message) -> None:
        finished = False
        try:
            await self.delivery.attempt(self.runtimes.current, message)
            finished = True
        finally:
            await asyncio.shield(self.queue.release(message.id, self.owner))
            if not finished:  # cut short: the release made its unrecorded recipients due now
                self._look_again()

    def _done(self, message_id: str) -> None:
        self.inflight.pop(message_id, None)
        self._wake.set()

    async def run_until_idle(self, now: float | None = None, timeout: float = 60.0) -> None:
        """Deliver everything due at ``now`` and wait for it (tests and one-shot runs)."""
        deadline = time.monotonic() + timeout
        self._start_all_waiting()
        while True:
            await self.run_due(now)
            if not self.inflight:
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("deliveries did not finish in time")
            await asyncio.wait(list(self.inflight.values()), timeout=left)
