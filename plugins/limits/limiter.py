"""The sending limits of one delivery plugin entry, checked before each SMTP transaction.

``Limiter.admit`` is used by ``deliver`` around its transaction::

    async with self.limits.admit(message, route.recipients, destination=..., account=..., route=label) as a:
        if a.recipients:
            a.sent = await send(... a.recipients ...)
    return a.results

Before: a destination that asked to slow down (``backoff``) defers everything until its
pause ends; each limit with ``max``/``every`` is counted in the queue's shared counters
(per recipient domain first, then per account and sender, each group all or nothing); what
does not fit is deferred until its next slot, with the reason in the reply ("limit 100/h for
office@isp.example reached; next slot 14:02") and ``retry_at`` set, so it is never bounced for
it. Then the ``connections`` limits are waited for (per process). After: a transaction that
sent nothing (every recipient failed temporarily) gives its counts back, and the results
teach the destination's backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from mailpipe.core.errors import Reply
from mailpipe.core.message import Message, Outcome, RecipientResult
from mailpipe.core.plugin import PluginContext
from mailpipe.core.queue import CounterRefusal, CounterRequest, QueueError, SharedCounters

from .backoff import Backoff
from .memory import MemoryCounters
from .options import BackoffOptions, LimitSpec
from .words import when


def domain_of(address: str) -> str:
    """The recipient's domain in lower case ("" when there is none)."""
    return address.rpartition("@")[2].strip().rstrip(".").lower()


@dataclass
class Admission:
    """What ``admit`` allows: ``recipients`` may be sent now; ``deferred`` wait for a slot.

    The caller puts the transaction's results in ``sent``; ``results`` is what ``deliver`` returns.
    """

    recipients: list[str]
    deferred: list[RecipientResult] = field(default_factory=list)
    taken: list[CounterRequest] = field(default_factory=list)
    at: float = 0.0
    sent: list[RecipientResult] = field(default_factory=list)

    @property
    def results(self) -> list[RecipientResult]:
        return self.sent + self.deferred


class _Slots:
    """Per-process semaphores for the ``connections`` limits, forgotten when unused."""

    def __init__(self) -> None:
        self._sems: dict[tuple[str, str], asyncio.Semaphore] = {}
        self._users: dict[tuple[str, str], int] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: tuple[str, str], size: int) -> AsyncIterator[None]:
        sem = self._sems.setdefault(key, asyncio.Semaphore(size))
        self._users[key] = self._users.get(key, 0) + 1
        try:
            async with sem:
                yield
        finally:
            self._users[key] -= 1
            if not self._users[key]:
                del self._users[key], self._sems[key]


class Limiter:
    """The ``limits`` and ``backoff`` of one chain entry (``entry``)."""

    def __init__(self, specs: list[LimitSpec], backoff: BackoffOptions, context: PluginContext, entry: str) -> None:
        self.counted = [s for s in specs if s.connections is None]
        self.connection_limits = [s for s in specs if s.connections is not None]
        self.context = context
        self.entry = entry
        self.backoff = Backoff(backoff, context, entry)
        self._fallback: MemoryCounters | None = None
        self._slots = _Slots()
        self._told: dict[str, float] = {}

    def take_over(self, old: Limiter) -> None:
        """A reload replaced the plugin of ``old``: destinations that asked to slow down stay slowed."""
        self.backoff.take_over(old.backoff)
        self._told = dict(old._told)

    def counters(self) -> SharedCounters:
        """The queue's shared counters, or this process's when the queue backend has none."""
        queue = self.context.queue
        if isinstance(queue, SharedCounters):
            return queue
        if self._fallback is None:
            self._fallback = MemoryCounters()
            if self.counted:
                self.context.emit("limits.local", f"{self.entry}: the queue backend keeps no shared counters; "
                                  "sending limits are counted in this process only", level="warning",
                                  plugin=self.entry)
        return self._fallback

    @contextlib.asynccontextmanager
    async def admit(self, message: Message, recipients: list[str], *, destination: str, account: str | None = None,
                    route: str = "") -> AsyncIterator[Admission]:
        """What may be sent now (see the module text); the caller sends ``recipients`` and sets ``sent``."""
        now = self.context.clock.now()
        paused = self.backoff.paused(destination, now)
        if paused is not None:
            until, reply = paused
            yield Admission([], [_deferred(r, reply, until, route) for r in recipients], at=now)
            return
        admission = (await self._count(message, recipients, account, now, route) if self.counted
                     else Admission(list(recipients), at=now))
        if not admission.recipients:
            yield admission
            return
        if not self.connection_limits and not self.backoff.pacing(destination):
            yield admission  # nothing to hold or wait for (the common case: no limits, no slow-down)
            await self._settle(admission, destination)
            return
        async with contextlib.AsyncExitStack() as stack:
            for key, size in self._connection_keys(message, admission.recipients, account):
                await stack.enter_async_context(self._slots.hold(key, size))
            await stack.enter_async_context(self.backoff.pace(destination))
            paused = self.backoff.paused(destination, self.context.clock.now())
            if paused is not None:  # the delivery before this one was told to slow down while this one waited
                await self._give_back(admission)
                until, reply = paused
                admission.deferred += [_deferred(r, reply, until, route) for r in admission.recipients]
                admission.recipients = []
            yield admission
        await self._settle(admission, destination)

    async def _give_back(self, admission: Admission) -> None:
        if admission.taken:
            with contextlib.suppress(QueueError):
                await self.counters().give_back(admission.taken, admission.at)
            admission.taken = []

    async def _settle(self, admission: Admission, destination: str) -> None:
        sent = admission.sent
        if sent and not any(r.outcome is Outcome.DELIVERED for r in sent):
            await self._give_back(admission)  # nothing was delivered: the counts go back
        self.backoff.observe(destination, sent, self.context.clock.now())

    # -- counting -------------------------------------------------------------------------------

    def _request(self, spec: LimitSpec, subject: str, recipients: int) -> CounterRequest:
        assert spec.max is not None and spec.every is not None
        amount = recipients if spec.count == "recipients" else 1
        key = f"{spec.per}:{subject}:{spec.count}/{spec.every:g}s"
        return CounterRequest(key, amount, spec.max, spec.every, f"{spec.rate} for {subject}")

    def _subject(self, spec: LimitSpec, message: Message, account: str | None) -> str | None:
        if spec.per == "account":
            return account
        return (message.sender or "<>").lower()

    async def _count(self, message: Message, recipients: list[str], account: str | None, now: float,
                     route: str) -> Admission:
        admission = Admission(list(recipients), at=now)
        if not self.counted:
            return admission
        counters = self.counters()
        try:
            per_domain = [s for s in self.counted if s.per == "domain"]
            if per_domain:
                by_domain: dict[str, list[str]] = {}
                for r in recipients:
                    by_domain.setdefault(domain_of(r), []).append(r)
                for domain, group in by_domain.items():
                    requests = [self._request(s, domain, len(group)) for s in per_domain]
                    refusal = await counters.take(requests, now)
                    if refusal is None:
                        admission.taken += requests
                    else:
                        self._defer(admission, group, refusal, now, route)
            others = [(s, self._subject(s, message, account)) for s in self.counted if s.per != "domain"]
            requests = [self._request(s, subject, len(admission.recipients)) for s, subject in others if subject]
            if requests and admission.recipients:
                refusal = await counters.take(requests, now)
                if refusal is None:
                    admission.taken += requests
                else:
                    await self._give_back(admission)
                    self._defer(admission, list(admission.recipients), refusal, now, route)
        except QueueError as exc:
            reply = Reply(451, "4.3.0", f"sending limits cannot be checked: {exc}")
            return Admission([], [RecipientResult(r, Outcome.TEMPORARY, reply, route=route) for r in recipients],
                             at=now)
        return admission

    def _defer(self, admission: Admission, group: list[str], refusal: CounterRefusal, now: float, route: str) -> None:
        slot = when(refusal.next_slot, now)
        reply = Reply(451, "4.7.0", f"limit {refusal.label} reached; next slot {slot}")
        admission.recipients = [r for r in admission.recipients if r not in group]
        admission.deferred += [_deferred(r, reply, refusal.next_slot, route) for r in group]
        if self._told.get(refusal.key, 0.0) <= now:
            if len(self._told) > 10_000:  # forget slots that have passed
                self._told = {k: v for k, v in self._told.items() if v > now}
            self._told[refusal.key] = refusal.next_slot
            self.context.emit("limits.reached", f"{self.entry}: limit {refusal.label} reached "
                              f"({refusal.used} used); mail waits in the queue until {slot}", level="warning",
                              plugin=self.entry, limit=refusal.label, next_slot=refusal.next_slot)

    def _connection_keys(self, message: Message, recipients: list[str],
                         account: str | None) -> list[tuple[tuple[str, str], int]]:
        keys: dict[tuple[str, str], int] = {}
        for spec in self.connection_limits:
            assert spec.connections is not None
            if spec.per == "domain":
                subjects = sorted({domain_of(r) for r in recipients})
            else:
                subject = self._subject(spec, message, account)
                subjects = [subject] if subject else []
            for s in subjects:
                keys[(spec.per, s)] = min(keys.get((spec.per, s), spec.connections), spec.connections)
        return sorted(keys.items())


def _deferred(recipient: str, reply: Reply, until: float, route: str) -> RecipientResult:
    return RecipientResult(recipient, Outcome.TEMPORARY, reply, route=route, retry_at=until)
