"""One attempt of one claimed message: ``route``, ``before_send``, then per route ``authenticate`` and ``deliver``.

Called by the scheduler for each message it claimed, with the runtime (chain and
settings) in force when the attempt started; a reload during the attempt does not
change the plugins it uses. Every recipient ends the attempt with a recorded
outcome (``recording.Recorder``):

- deliveries are recorded as soon as their route finishes, so a crash never forgets them;
- the failures of all routes are recorded together at the end, so the sender gets at
  most one report per message and attempt (a crash before that leaves them queued:
  tried again, never bounced twice);
- recipients no chain entry routes fail temporarily (``451 4.4.0``, event ``route.none``);
- an error inside mailpipe is a temporary failure (``451 4.3.0``) for every recipient
  not yet recorded: never a lost message.
"""

from __future__ import annotations

import asyncio
import logging
import time

from .errors import Reply, SMTPError
from .events import Events
from .message import Credentials, Message, RecipientResult, Route
from .recording import Recorder
from .runtime import Runtime
from .sessions import Sessions

log = logging.getLogger("mailpipe.delivery")


def failed(recipients: list[str], reply: Reply, route: str = "") -> list[RecipientResult]:
    """The same failure for each recipient."""
    return RecipientResult.for_all(recipients, reply, route=route)


class Delivery:
    """Carries out attempts for the scheduler; one per gateway."""

    def __init__(self, recorder: Recorder, events: Events, sessions: Sessions) -> None:
        self.recorder = recorder
        self.events = events
        self.sessions = sessions

    async def attempt(self, runtime: Runtime, message: Message) -> None:
        """Deliver the claimed recipients of ``message``; never lets an error lose it."""
        recorded: set[str] = set()
        try:
            await self._attempt(runtime, message, recorded)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("%s: delivery failed inside mailpipe", message.id)
            reply = Reply(451, "4.3.0", f"internal error in mailpipe: {type(exc).__name__}")
            left = [r.address for r in message.recipients if r.address not in recorded]
            if left:
                await self.recorder.record(runtime, message, failed(left, reply))

    async def _attempt(self, runtime: Runtime, message: Message, recorded: set[str]) -> None:
        recipients = [r.address for r in message.recipients]
        try:
            routes, unrouted = await runtime.chain.route(message, recipients)
        except SMTPError as exc:
            await self.recorder.record(runtime, message, failed(recipients, exc.reply))
            recorded.update(recipients)
            return
        failures: list[RecipientResult] = []
        if unrouted:
            self.events.emit("route.none", f"{message.id}: no chain entry routes {', '.join(unrouted)}",
                             level="warning", message=message.id)
            failures += failed(unrouted, Reply(451, "4.4.0", "no route for this recipient"))
        if routes:
            try:
                await self.before_send(runtime, message)
            except SMTPError as exc:
                failures += [r for route in routes for r in failed(route.recipients, exc.reply, route.destination)]
                routes = []
        for route in routes:
            with self.sessions.outgoing(message.id, route):
                results = await self.deliver_route(runtime, message, route)
            delivered = [r for r in results if not r.failed]
            if delivered:
                await self.recorder.record(runtime, message, delivered)
                recorded.update(r.recipient for r in delivered)
            failures += [r for r in results if r.failed]
        if failures:
            await self.recorder.record(runtime, message, failures)
            recorded.update(r.recipient for r in failures)

    @staticmethod
    async def before_send(runtime: Runtime, message: Message) -> None:
        """``before_send`` in chain order, each plugin given the bytes the previous one returned; the result is
        held as the message's body for the rest of this attempt (the queue keeps the stored bytes)."""
        chain = runtime.chain
        implementations = chain.implementations("before_send")
        if not implementations:
            return
        data = original = await message.body()
        for impl in implementations:
            result = await chain.call(impl, "before_send", {"message": message, "data": data})
            if result is not None:
                data = result
        if data is not original:
            message.set_body(data)

    async def deliver_route(self, runtime: Runtime, message: Message, route: Route) -> list[RecipientResult]:
        """``authenticate`` (chain order) then ``deliver`` (the route's plugin); one result per recipient."""
        chain = runtime.chain
        started = time.monotonic()
        try:
            credentials = (await chain.first("authenticate", message=message, route=route)
                           or Credentials.none())
            results = await chain.call_owner(route, "deliver", message=message, route=route, credentials=credentials)
            if results is None:
                raise SMTPError(451, "4.3.5", f"chain entry {route.plugin!r} gave no result for its route")
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
        self.events.emit("delivery.attempt", f"{message.id}: {label} took {elapsed:.3f}s", level="debug",
                         store=False, message=message.id, route=label, recipients=len(results), duration=elapsed)
        return results
