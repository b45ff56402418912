"""Adaptive backoff per destination: a server that answers "too many ..." gets mail more slowly.

When a destination (a smarthost, a recipient domain) answers 421, 450 or 451 with a text about
too many messages or connections, or a rate limit, deliveries to it pause: first for
``initial``, doubled with each further such reply up to ``max``. While it recovers (after a
pause, until successes have stepped it back down) only one delivery to it runs at a time.
Each slow-down raises ``limits.backoff``; the return to full speed ``limits.backoff_ended``.
The state is this process's (it is a reaction to what a server just said, not a count).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from mailpipe.core.dsn import human_duration
from mailpipe.core.errors import Reply
from mailpipe.core.message import RecipientResult
from mailpipe.core.plugin import PluginContext

from .options import BackoffOptions
from .words import when

TOO_MANY = re.compile(r"too many|rate.?limit|throttl|slow down|exceeded", re.IGNORECASE)
CODES = (421, 450, 451)
MAX_STEP = 12


def too_many(reply: Reply) -> bool:
    """Whether ``reply`` is a server asking to slow down (421/450/451 "too many ...", "rate limit")."""
    return reply.code in CODES and bool(TOO_MANY.search(reply.text))


@dataclass
class _Destination:
    step: int = 0
    paused_until: float = 0.0
    reply: Reply | None = None
    one_at_a_time: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(1))


class Backoff:
    """The slow-down state of one delivery plugin's destinations."""

    def __init__(self, options: BackoffOptions, context: PluginContext, entry: str) -> None:
        self.options = options
        self.context = context
        self.entry = entry
        self._destinations: dict[str, _Destination] = {}

    def take_over(self, old: Backoff) -> None:
        """Keep what ``old`` learnt (a reload replaced the plugin): slowed destinations stay slowed."""
        self._destinations.update(old._destinations)

    def paused(self, destination: str, now: float) -> tuple[float, Reply] | None:
        """``(until, reply)`` while deliveries to ``destination`` pause, else None."""
        state = self._destinations.get(destination)
        if state is None or state.reply is None or now >= state.paused_until:
            return None
        text = (f"{destination} asked to slow down ({state.reply}); next try {when(state.paused_until, now)}")
        return state.paused_until, Reply(451, "4.7.0", text)

    def pacing(self, destination: str) -> bool:
        """True while deliveries to ``destination`` go one at a time (``pace`` may wait)."""
        state = self._destinations.get(destination)
        return state is not None and state.step != 0

    @contextlib.asynccontextmanager
    async def pace(self, destination: str) -> AsyncIterator[None]:
        """Hold the delivery slot for ``destination``: one at a time while it recovers, no limit otherwise."""
        state = self._destinations.get(destination)
        if state is None or state.step == 0:
            yield
            return
        async with state.one_at_a_time:
            yield

    def observe(self, destination: str, results: list[RecipientResult], now: float) -> None:
        """Learn from a transaction's results: a "too many" reply slows down, a delivery speeds up."""
        state = self._destinations.get(destination)
        slow = next((r.reply for r in results if r.retry_at is None and too_many(r.reply)), None)
        if slow is not None:
            state = state or self._destinations.setdefault(destination, _Destination())
            if now < state.paused_until:  # others in flight heard the same: one step per pause
                return
            state.step = min(state.step + 1, MAX_STEP)
            pause = min(self.options.initial * 2 ** (state.step - 1), self.options.max)
            state.paused_until, state.reply = now + pause, slow
            self.context.emit("limits.backoff", f"{destination} answered {slow}; {self.entry} pauses deliveries "
                              f"to it for {human_duration(pause)}, then sends one at a time until it takes mail "
                              "again", level="warning", destination=destination, plugin=self.entry,
                              reply=str(slow), pause=pause, step=state.step)
            return
        if state is None or not any(not r.failed for r in results):
            return
        state.step -= 1
        if state.step <= 0:
            del self._destinations[destination]
            self.context.emit("limits.backoff_ended", f"{destination} takes mail again; {self.entry} delivers to "
                              "it at full speed", destination=destination, plugin=self.entry)
