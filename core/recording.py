"""After an attempt: decide about each failure, compute each recipient's new state, store it, tell.

This is where delivery policy meets the queue. For the results of one attempt of one
message, ``Recorder.record``:

1. asks ``on_failure`` (chain order) what to do with each failed recipient; with no
   answer a permanent failure bounces and a temporary one is retried after
   ``delivery.default_retry``;
2. turns each result and decision into a ``RecipientUpdate`` (the state the queue
   persists: delivered, deferred with its next attempt, failed, expired) and its
   message-log line;
3. builds the delivery reports the bounce rules call for (``bounces.py``) and has the
   queue store updates, attributes and reports in one transaction;
4. emits one event per recipient and per report, and wakes the scheduler when a
   report was queued.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from . import bounces
from .clock import Clock
from .dsn import human_duration
from .errors import SMTPError
from .events import Events
from .message import Decision, Message, Outcome, RecipientResult, RecipientState
from .queue import Attempt, DeliveryQueue, RecipientUpdate
from .runtime import Runtime

_REPORT_NAMES = {"failed": "bounce", "delayed": "delay warning"}


def default_decision(result: RecipientResult, now: float, default_retry: float) -> Decision:
    """The core's answer when no ``on_failure`` plugin answers: bounce permanent, retry temporary."""
    if result.outcome is Outcome.PERMANENT:
        return Decision.bounce()
    return Decision.retry(now + default_retry)


def update_for(message: Message, result: RecipientResult, decision: Decision | None, now: float,
               node: str = "") -> RecipientUpdate:
    """The recipient's new state after ``result`` (and ``decision`` for a failure), with its log line."""
    next_attempt = 0.0
    if result.outcome is Outcome.DELIVERED:
        state, action = RecipientState.DELIVERED, "delivered"
    elif decision is None or decision.action == "retry":
        state, action = RecipientState.DEFERRED, "deferred"
        next_attempt = decision.retry_at if decision is not None and decision.retry_at is not None else now
    elif decision.expired:
        state, action = RecipientState.EXPIRED, "expired"
    else:
        state = RecipientState.FAILED
        action = "bounced" if decision.action == "bounce" and decision.notify else "dropped"
    reply = result.reply
    attempt = Attempt(now, message.id, result.recipient, result.outcome.value, result.route, result.remote_host,
                      result.remote_addr, reply.code, reply.enhanced, reply.text, result.duration, message.sender,
                      action, node)
    return RecipientUpdate(result.recipient, state, next_attempt, str(reply), attempt)


@dataclass(eq=False)
class Recorder:
    """Records attempts for the scheduler; one per gateway (``wake`` is called when it queued bounces)."""

    queue: DeliveryQueue
    events: Events
    clock: Clock
    wake: Callable[[], None]

    async def decide(self, runtime: Runtime, message: Message, result: RecipientResult, now: float) -> Decision:
        """``on_failure`` in chain order; the core default when no plugin answers.

        A temporary result with ``retry_at`` (held back by a sending limit or a destination's
        "slow down") is deferred until then without asking anyone: never bounced for it.
        """
        if result.retry_at is not None and result.outcome is Outcome.TEMPORARY:
            return Decision.retry(max(now, result.retry_at), str(result.reply))
        try:
            decision = await runtime.chain.first("on_failure", message=message, result=result)
        except SMTPError:
            decision = None
        if decision is not None:
            return decision
        return default_decision(result, now, runtime.settings.delivery.default_retry)

    async def record(self, runtime: Runtime, message: Message, results: list[RecipientResult]) -> None:
        """Decide about failures, store results and reports in one transaction, emit events."""
        now = self.clock.now()
        decisions = {r.recipient: await self.decide(runtime, message, r, now) for r in results if r.failed}
        notices = await bounces.notices(runtime.settings.hostname, message, results, decisions, now)
        node = runtime.settings.hostname
        updates = [update_for(message, r, decisions.get(r.recipient), now, node) for r in results]
        await self.queue.record(message, updates, now, new_messages=notices)
        self._tell(message, results, decisions, notices, now)
        if notices or any(u.state is RecipientState.DEFERRED for u in updates):
            self.wake()  # a report to send, or a recipient due again later: the scheduler looks at the queue

    def _tell(self, message: Message, results: list[RecipientResult], decisions: dict[str, Decision],
              notices: list[tuple[Message, bytes]], now: float) -> None:
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
            self.events.emit(
                kind, f"{message.id}: <{r.recipient}> {r.outcome.value} via {r.route}: {r.reply}",
                level=level, store=level != "info", message=message.id, sender=message.sender, recipient=r.recipient,
                remote=r.remote_host, remote_addr=r.remote_addr, route=r.route, duration=r.duration,
                queued_for=now - message.created, dsn=r.reply.enhanced,
            )
        if expired:
            self.events.emit(
                "message.expired",
                f"{message.id} from <{message.sender}>: {len(expired)} recipient(s) expired, undelivered "
                f"after {human_duration(now - message.created)}: {', '.join(expired)}",
                level="warning", message=message.id, recipients=expired,
            )
        for report, _data in notices:
            name = _REPORT_NAMES.get(report.attributes.get("dsn_action", ""), "report")
            about = ", ".join(report.attributes.get("about", []))
            self.events.emit(
                "dsn.queued",
                f"{report.id}: {name} about {message.id} queued for <{message.sender}> ({about})",
                message=message.id, report=report.id,
            )
        told = [r for r, d in decisions.items() if d.action == "bounce" and d.notify]
        reason = bounces.silent_reason(message)
        if told and reason:
            self.events.emit("dsn.suppressed", f"{message.id}: no report sent about {', '.join(told)}: {reason}",
                             message=message.id)
