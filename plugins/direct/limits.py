"""Concurrency limits of direct delivery: deliveries in progress per recipient domain and in all.

``Limits.slot(domain)`` bounds the deliveries in progress: at most
``per_domain`` for one recipient domain and ``total`` over all domains; a
delivery over the limit waits for a free slot (it is not failed).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field


@dataclass
class LimitStats:
    """Deliveries in progress now and the most seen at once (overall and per domain)."""

    active: int = 0
    peak: int = 0
    active_by_domain: dict[str, int] = field(default_factory=dict)
    peak_by_domain: dict[str, int] = field(default_factory=dict)


class Limits:
    """Per-domain and total caps on deliveries in progress."""

    def __init__(self, total: int, per_domain: int) -> None:
        self.total = asyncio.Semaphore(total)
        self.per_domain = per_domain
        self._domains: dict[str, asyncio.Semaphore] = {}
        self._users: dict[str, int] = {}
        self.stats = LimitStats()

    @contextlib.asynccontextmanager
    async def slot(self, domain: str) -> AsyncIterator[None]:
        """Hold one delivery slot for ``domain`` (waiting for one when all are taken)."""
        sem = self._domains.setdefault(domain, asyncio.Semaphore(self.per_domain))
        self._users[domain] = self._users.get(domain, 0) + 1
        try:
            async with sem, self.total:
                s = self.stats
                s.active += 1
                s.active_by_domain[domain] = s.active_by_domain.get(domain, 0) + 1
                s.peak = max(s.peak, s.active)
                s.peak_by_domain[domain] = max(s.peak_by_domain.get(domain, 0), s.active_by_domain[domain])
                try:
                    yield
                finally:
                    s.active -= 1
                    s.active_by_domain[domain] -= 1
        finally:
            self._users[domain] -= 1
            if not self._users[domain]:  # forget idle domains so the dicts do not grow forever
                del self._users[domain]
                del self._domains[domain]
                self.stats.active_by_domain.pop(domain, None)
