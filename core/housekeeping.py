"""Pruning the queue's history: at start and then once an hour (clock time), once per queue.

The queue removes attempts, events and finished messages older than its retention
(``QueueAdmin.prune``), so the message and event logs cannot fill a disk.
"""

from __future__ import annotations

from .events import Events
from .queue import QueueAdmin

PRUNE_EVERY = 3600.0


class Housekeeping:
    """Called by the scheduler on every pass; prunes when an hour has passed since the last time."""

    def __init__(self, queue: QueueAdmin, events: Events) -> None:
        self.queue = queue
        self.events = events
        self._last: float | None = None

    async def run(self, now: float) -> None:
        """Prune history now if this is the first pass or the last prune is an hour old."""
        if self._last is not None and now - self._last < PRUNE_EVERY:
            return
        self._last = now
        if not await self.queue.run_once("prune", now, PRUNE_EVERY):
            return  # another process sharing the queue pruned within the hour
        removed = await self.queue.prune(now)
        if any(removed.values()):
            self.events.emit(
                "queue.pruned", "removed old history: " + ", ".join(f"{n} {k}" for k, n in removed.items()),
                **removed,
            )
