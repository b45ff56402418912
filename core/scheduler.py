"""The delivery scheduler: finds due messages and moves them through the chain.

For each due message: ``route`` groups its recipients, then per route
``authenticate`` and ``deliver``; every recipient's outcome is recorded (after
each route, so a crash never forgets a delivery made on an earlier route) and
failures go to ``on_failure`` for the retry/expiry decision.

It never polls the queue in a tight loop: it sleeps until the earliest next
attempt, a new message, a ``pipeline queue retry`` poke, the next schedule
window or, at the latest, a minute (so changes by other processes are seen).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from typing import TYPE_CHECKING

from croniter import croniter

from .errors import Reply, SMTPError, TemporaryError
from .message import Credentials, Decision, Message, Outcome, RecipientResult, Route

if TYPE_CHECKING:
    from .gateway import Gateway

log = logging.getLogger("mailpipe.scheduler")
SAFETY_WAKE = 60.0


def failed(recipients: list[str], reply: Reply, route: str = "") -> list[RecipientResult]:
    """The same failure for each recipient."""
    return RecipientResult.for_all(recipients, reply, route=route)


class Scheduler:
    """Delivery runs for one gateway; at most ``delivery.concurrency`` messages at a time."""

    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway
        self.delivery = gateway.settings.delivery
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.lease_seconds = gateway.chain.timeouts["deliver"] + 300
        self.inflight: dict[str, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._force = False
        self._draining = self.delivery.send_immediately
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._next_window: float | None = None

    # -- control ----------------------------------------------------------------------------

    def wake(self, *, force: bool = False) -> None:
        """Look for due work now; ``force`` starts a run even outside the schedule."""
        self._force = self._force or force
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="mailpipe-scheduler")

    async def stop(self, grace: float) -> None:
        """Start nothing new; wait up to ``grace`` seconds for deliveries in flight, then cut them."""
        self._stopping = True
        self._wake.set()
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

    # -- the loop -------------------------------------------------------------------------

    def next_window(self, now: float) -> float:
        """Start of the next schedule window after ``now`` (the earliest of the cron expressions)."""
        return min(croniter(expr, now).get_next(float) for expr in self.delivery.schedule)

    def may_send(self, now: float) -> bool:
        """Whether a run may start now: immediately, forced, or in an open schedule window."""
        if self.delivery.send_immediately or self._force:
            return True
        if not self.delivery.schedule:
            return False
        if self._next_window is None:
            self._next_window = self.next_window(now)
        if now >= self._next_window:
            self._draining = True
            self._next_window = self.next_window(now)
        return self._draining

    async def _loop(self) -> None:
        while not self._stopping:
            now = self.gw.clock.now()
            try:
                if self.may_send(now):
                    started = await self.run_due(now)
                    if not started and not self.inflight and not self.delivery.send_immediately:
                        self._draining = False
                    self._force = False
                timeout = await self._sleep_time(now)
            except Exception:
                log.exception("scheduler run failed; trying again in %ss", SAFETY_WAKE)
                timeout = SAFETY_WAKE
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass
            self._wake.clear()

    async def _sleep_time(self, now: float) -> float:
        nxt = await self.gw.queue.next_due()
        timeout = SAFETY_WAKE if nxt is None else min(SAFETY_WAKE, max(0.0, nxt - now))
        if not self.delivery.send_immediately and not self._draining and self._next_window is not None:
            timeout = max(0.0, min(SAFETY_WAKE, self._next_window - now))
        if len(self.inflight) >= self.delivery.concurrency:
            timeout = SAFETY_WAKE  # a finishing delivery wakes us
        return timeout

    async def run_due(self, now: float | None = None) -> int:
        """Claim due messages up to the free capacity and start their deliveries; return how many."""
        now = self.gw.clock.now() if now is None else now
        capacity = self.delivery.concurrency - len(self.inflight)
        if capacity <= 0 or self._stopping:
            return 0
        messages = await self.gw.queue.claim_due(now, capacity, self.owner, now + self.lease_seconds)
        for message in messages:
            task = asyncio.create_task(self.process(message), name=f"deliver-{message.id}")
            self.inflight[message.id] = task
            task.add_done_callback(lambda _t, mid=message.id: self._done(mid))
        return len(messages)

    def _done(self, message_id: str) -> None:
        self.inflight.pop(message_id, None)
        self._wake.set()

    async def run_until_idle(self, now: float | None = None, timeout: float = 60.0) -> None:
        """Deliver everything due at ``now`` and wait for it (tests and ``queue flush``)."""
        deadline = time.monotonic() + timeout
        while True:
            await self.run_due(now)
            if not self.inflight:
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("deliveries did not finish in time")
            await asyncio.wait(list(self.inflight.values()), timeout=left)

    # -- one message --------------------------------------------------------------------

    async def process(self, message: Message) -> None:
        """Deliver the claimed recipients of one message; never lets an error lose it."""
        try:
            await self.deliver_message(message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("%s: delivery failed inside mailpipe", message.id)
            reply = Reply(451, "4.3.0", f"internal error in mailpipe: {type(exc).__name__}")
            await self.record(message, failed([r.address for r in message.recipients], reply))
        finally:
            await asyncio.shield(self.gw.queue.release(message.id, self.owner))

    async def route(self, message: Message, recipients: list[str]) -> tuple[list[Route], list[str]]:
        """Walk ``route`` in chain order; each plugin sees the recipients no earlier one took."""
        routes: list[Route] = []
        left = list(recipients)
        for impl in self.gw.chain.implementations("route"):
            if not left:
                break
            answer = await self.gw.chain.call(impl, "route", {"message": message, "recipients": list(left)})
            for r in answer or []:
                r.recipients = [x for x in r.recipients if x in left]
                if r.recipients:
                    routes.append(r)
                    left = [x for x in left if x not in r.recipients]
        return routes, left

    async def deliver_message(self, message: Message) -> None:
        recipients = [r.address for r in message.recipients]
        try:
            routes, unrouted = await self.route(message, recipients)
        except SMTPError as exc:
            await self.record(message, failed(recipients, exc.reply))
            return
        if unrouted:
            self.gw.events.emit("route.none", f"{message.id}: no chain entry routes {', '.join(unrouted)}",
                                level="warning", message=message.id)
            await self.record(message, failed(unrouted, Reply(451, "4.4.0", "no route for this recipient")))
        for route in routes:
            await self.record(message, await self.deliver_route(message, route))

    async def deliver_route(self, message: Message, route: Route) -> list[RecipientResult]:
        """``authenticate`` then ``deliver`` for one route; one result per recipient of the route."""
        chain = self.gw.chain
        started = time.monotonic()
        try:
            credentials = await chain.first("authenticate", message=message, route=route) or Credentials.none()
            results = await chain.first("deliver", message=message, route=route, credentials=credentials)
            if results is None:
                raise TemporaryError(f"no plugin delivers routes made by {route.plugin!r}", 451, "4.3.5")
        except SMTPError as exc:
            results = failed(route.recipients, exc.reply, route.destination)
        wanted = set(route.recipients)
        results = [r for r in results if r.recipient in wanted]
        missing = wanted - {r.recipient for r in results}
        results += failed(sorted(missing), Reply(451, "4.3.0", "delivery gave no result"), route.destination)
        elapsed = time.monotonic() - started
        for r in results:
            r.route = r.route or f"{route.kind}:{route.destination}"
            r.duration = r.duration or elapsed
        return results

    async def decide(self, message: Message, result: RecipientResult, now: float) -> Decision:
        """``on_failure`` in chain order; the core default when no plugin answers."""
        try:
            decision = await self.gw.chain.first("on_failure", message=message, result=result)
        except SMTPError:
            decision = None
        if decision is not None:
            return decision
        if result.outcome is Outcome.PERMANENT:
            return Decision.bounce()
        return Decision.retry(now + self.delivery.default_retry)

    async def record(self, message: Message, results: list[RecipientResult]) -> None:
        """Decide about failures, store results durably, emit events, queue notifications."""
        now = self.gw.clock.now()
        decisions = {r.recipient: await self.decide(message, r, now) for r in results if r.failed}
        notices = await self.gw.notices(message, results, decisions, now)
        await self.gw.queue.record(message, results, decisions, now, new_messages=notices)
        for r in results:
            d = decisions.get(r.recipient)
            if r.outcome is Outcome.DELIVERED:
                kind, level = "message.delivered", "info"
            elif d is not None and d.action == "retry":
                kind, level = "message.deferred", "info"
            elif d is not None and d.expired:
                kind, level = "message.expired", "warning"
            else:
                kind, level = "message.bounced" if (d and d.notify) else "message.dropped", "warning"
            self.gw.events.emit(
                kind, f"{message.id}: <{r.recipient}> {r.outcome.value} via {r.route}: {r.reply}",
                level=level, store=level != "info", message=message.id, recipient=r.recipient,
                remote=r.remote_host,
            )
        if notices:
            self.wake()
