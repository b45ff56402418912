"""The delivery scheduler: finds due messages and moves them through the chain.

For each due message: ``route`` groups its recipients, then per route
``authenticate`` and ``deliver``; every recipient's outcome is recorded (after
each route, so a crash never forgets a delivery made on an earlier route) and
failures go to ``on_failure`` for the retry/expiry decision.

It never polls the queue in a tight loop: it sleeps until the earliest next
attempt, a new message, a ``pipeline queue retry`` poke, the next schedule
window or, at the latest, a minute (so changes by other processes are seen).

The schedule (``delivery.send_immediately: false``): a delivery run may start
only in a minute that one of the ``delivery.schedule`` cron expressions
matches (local time; ``0 */2 * * *`` is the first minute of every second hour,
``* 22-23,0-5 * * *`` every minute of the night). A run that started drains
everything due, even past the window; mail deferred during it waits for the
next window. ``wake(force=True)`` (``pipeline queue retry``) starts a run at
any time. Every time the scheduler acts on comes from the injected clock and
the stored next-attempt times, so a restart changes no schedule.

Once an hour (clock time) it asks the queue to prune history older than its
retention (``queue.prune``), so the message and event logs cannot fill a disk.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from datetime import datetime
from typing import TYPE_CHECKING

from croniter import croniter

from .bounces import silent_reason
from .dsn import human_duration
from .errors import Reply, SMTPError, TemporaryError
from .message import Credentials, Decision, Message, Outcome, RecipientResult, Route

if TYPE_CHECKING:
    from .gateway import Gateway

log = logging.getLogger("mailpipe.scheduler")
SAFETY_WAKE = 60.0
PRUNE_EVERY = 3600.0
_REPORT_NAMES = {"failed": "bounce", "delayed": "delay warning"}


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
        self._last_prune: float | None = None
        self._claim_batch = max(1, self.delivery.concurrency // 4)

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

    def in_window(self, now: float) -> bool:
        """Whether ``now`` is in a minute one of ``delivery.schedule``'s expressions matches (local time)."""
        when = datetime.fromtimestamp(now).astimezone()
        return any(croniter.match(expr, when) for expr in self.delivery.schedule)

    def next_window(self, now: float) -> float | None:
        """Start of the next schedule window after ``now``; None without a schedule."""
        if not self.delivery.schedule:
            return None
        when = datetime.fromtimestamp(now).astimezone()
        return min(croniter(expr, when).get_next(float) for expr in self.delivery.schedule)

    def may_send(self, now: float) -> bool:
        """Whether a run may start now: immediately, forced, draining, or in a schedule window."""
        if self.delivery.send_immediately:
            return True
        if self._force or self.in_window(now):
            self._force = False
            self._draining = True
        return self._draining

    def _run_ended(self) -> None:
        """Nothing was due and nothing is in flight: a scheduled or forced run is over."""
        if not self.delivery.send_immediately and self._draining:
            self._draining = False
            log.debug("delivery run finished; next schedule window at %s", self.next_window(self.gw.clock.now()))

    async def _loop(self) -> None:
        while not self._stopping:
            now = self.gw.clock.now()
            try:
                await self.housekeeping(now)
                timeout = SAFETY_WAKE
                if self.may_send(now):
                    free = self.delivery.concurrency - len(self.inflight)
                    # Claim in batches: under load, a claim per finished delivery would cost the queue
                    # one job each; waiting until a quarter of the slots is free costs little latency.
                    if free >= self._claim_batch or not self.inflight:
                        started = await self.run_due(now)
                        if started < free:  # nothing more is due now: sleep until the next due time
                            if not started and not self.inflight:
                                self._run_ended()
                            timeout = await self._sleep_time(now)
                else:
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
        if not self.delivery.send_immediately and not self._draining:
            window = self.next_window(now)
            timeout = SAFETY_WAKE if window is None else max(0.0, min(SAFETY_WAKE, window - now))
        if len(self.inflight) >= self.delivery.concurrency:
            timeout = SAFETY_WAKE  # a finishing delivery wakes us
        return timeout

    async def tick(self, now: float | None = None, timeout: float = 60.0) -> int:
        """One pass of the delivery loop at ``now`` (clock time), waited for; return messages started.

        Honours the schedule exactly as the running loop does (nothing starts
        outside a window unless forced) and prunes history when an hour has
        passed; ``run_until_idle`` ignores the schedule. For tests that drive
        time through the clock, and for one-shot runs.
        """
        now = self.gw.clock.now() if now is None else now
        await self.housekeeping(now)
        if not self.may_send(now):
            return 0
        deadline = time.monotonic() + timeout
        total = 0
        while True:
            started = await self.run_due(now)
            total += started
            if not started and not self.inflight:
                self._run_ended()
                return total
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("deliveries did not finish in time")
            if self.inflight:
                await asyncio.wait(list(self.inflight.values()), timeout=left)

    async def housekeeping(self, now: float) -> None:
        """Prune old history through the queue at start and then every hour (clock time)."""
        if self._last_prune is not None and now - self._last_prune < PRUNE_EVERY:
            return
        self._last_prune = now
        removed = await self.gw.queue.prune(now)
        if any(removed.values()):
            self.gw.events.emit(
                "queue.pruned", "removed old history: " + ", ".join(f"{n} {k}" for k, n in removed.items()),
                **removed,
            )

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
        recorded: set[str] = set()
        try:
            await self.deliver_message(message, recorded)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("%s: delivery failed inside mailpipe", message.id)
            reply = Reply(451, "4.3.0", f"internal error in mailpipe: {type(exc).__name__}")
            left = [r.address for r in message.recipients if r.address not in recorded]
            if left:
                await self.record(message, failed(left, reply))
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

    async def deliver_message(self, message: Message, recorded: set[str] | None = None) -> None:
        """Route, then deliver route by route.

        Deliveries are recorded as soon as their route finishes (a crash never
        forgets them); the failures of all routes are recorded together at the
        end, so the sender gets at most one report per message and attempt.
        A crash before that leaves the failed recipients queued: they are tried
        again, never bounced twice. ``recorded`` collects the recipients done.
        """
        recorded = set() if recorded is None else recorded
        recipients = [r.address for r in message.recipients]
        try:
            routes, unrouted = await self.route(message, recipients)
        except SMTPError as exc:
            await self.record(message, failed(recipients, exc.reply))
            recorded.update(recipients)
            return
        failures: list[RecipientResult] = []
        if unrouted:
            self.gw.events.emit("route.none", f"{message.id}: no chain entry routes {', '.join(unrouted)}",
                                level="warning", message=message.id)
            failures += failed(unrouted, Reply(451, "4.4.0", "no route for this recipient"))
        for route in routes:
            with self.gw.sessions.outgoing(message.id, route):
                results = await self.deliver_route(message, route)
            delivered = [r for r in results if not r.failed]
            if delivered:
                await self.record(message, delivered)
                recorded.update(r.recipient for r in delivered)
            failures += [r for r in results if r.failed]
        if failures:
            await self.record(message, failures)
            recorded.update(r.recipient for r in failures)

    async def deliver_route(self, message: Message, route: Route) -> list[RecipientResult]:
        """``authenticate`` then ``deliver`` for one route; one result per recipient of the route."""
        chain = self.gw.chain
        started = time.monotonic()
        try:
            credentials = (await chain.first("authenticate", message=message, route=route)
                           or Credentials.none())
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
        # One event per attempt of a route, however many recipients it had (metrics' attempt duration).
        label = f"{route.kind}:{route.destination}"
        self.gw.events.emit("delivery.attempt", f"{message.id}: {label} took {elapsed:.3f}s", level="debug",
                            store=False, message=message.id, route=label, recipients=len(results), duration=elapsed)
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
        """Decide about failures, store results and reports in one transaction, emit events."""
        now = self.gw.clock.now()
        decisions = {r.recipient: await self.decide(message, r, now) for r in results if r.failed}
        notices = await self.gw.notices(message, results, decisions, now)
        await self.gw.queue.record(message, results, decisions, now, new_messages=notices)
        expired: list[str] = []
        for r in results:
            d = decisions.get(r.recipient)
            if d is not None and d.expired:
                expired.append(r.recipient)
                continue
            if r.outcome is Outcome.DELIVERED:
                kind, level = "message.delivered", "info"
            elif d is not None and d.action == "retry":
                kind, level = "message.deferred", "info"
            else:
                kind, level = "message.bounced" if (d and d.notify) else "message.dropped", "warning"
            self.gw.events.emit(
                kind, f"{message.id}: <{r.recipient}> {r.outcome.value} via {r.route}: {r.reply}",
                level=level, store=level != "info", message=message.id, recipient=r.recipient,
                remote=r.remote_host, route=r.route, duration=r.duration, queued_for=now - message.created,
            )
        if expired:
            self.gw.events.emit(
                "message.expired",
                f"{message.id} from <{message.sender}>: {len(expired)} recipient(s) expired, undelivered "
                f"after {human_duration(now - message.created)}: {', '.join(expired)}",
                level="warning", message=message.id, recipients=expired,
            )
        for report, _data in notices:
            name = _REPORT_NAMES.get(report.attributes.get("dsn_action", ""), "report")
            about = ", ".join(report.attributes.get("about", []))
            self.gw.events.emit(
                "dsn.queued",
                f"{report.id}: {name} about {message.id} queued for <{message.sender}> ({about})",
                message=message.id, report=report.id,
            )
        told = [r for r, d in decisions.items() if d.action == "bounce" and d.notify]
        reason = silent_reason(message)
        if told and reason:
            self.gw.events.emit("dsn.suppressed",
                                f"{message.id}: no report sent about {', '.join(told)}: {reason}",
                                message=message.id)
        if notices:
            self.wake()
