"""Concurrency limits and reuse of SMTP sessions to the same MX host.

``Limits.slot(domain)`` bounds the deliveries in progress: at most
``per_domain`` for one recipient domain and ``total`` over all domains; a
delivery over the limit waits for a free slot (it is not failed).

``SessionPool`` keeps a session whose transaction ended cleanly for
``idle_timeout`` seconds, so the next message to the same MX host (from any
domain that uses it) skips connect, greeting, EHLO and STARTTLS. A kept
session is checked with RSET before reuse; it is closed after
``max_messages`` transactions, when idle too long, and at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from .session import Session, close_session


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


class SessionPool:
    """Idle sessions per MX host (name, port), ready for the next transaction."""

    def __init__(
        self, *, enabled: bool, idle_timeout: float, max_messages: int, probe_timeout: float,
    ) -> None:
        self.enabled = enabled and idle_timeout > 0
        self.idle_timeout = idle_timeout
        self.max_messages = max_messages
        self.probe_timeout = probe_timeout
        self._idle: dict[tuple[str, int], list[tuple[Session, asyncio.TimerHandle]]] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self.opened = 0
        self.reused = 0

    async def take(self, host: str, port: int) -> Session | None:
        """An idle session to ``host`` that still answers, or None."""
        idle = self._idle.get((host, port))
        while idle:
            session, timer = idle.pop()
            timer.cancel()
            if not session.client.is_connected:
                session.client.close()
                continue
            try:
                await asyncio.wait_for(session.client.rset(), self.probe_timeout)
            except Exception:  # noqa: BLE001 - gone stale: open a new one instead
                session.client.close()
                continue
            self.reused += 1
            return session
        return None

    async def give_back(self, session: Session, *, reusable: bool) -> None:
        """Keep ``session`` for the next message to its host, or close it."""
        session.messages += 1
        keep = self.enabled and reusable and session.messages < self.max_messages
        if not (keep and session.client.is_connected):
            await close_session(session)
            return
        key = (session.host, session.port)
        loop = asyncio.get_running_loop()
        timer = loop.call_later(self.idle_timeout, self._expire, key, session)
        self._idle.setdefault(key, []).append((session, timer))

    def _expire(self, key: tuple[str, int], session: Session) -> None:
        idle = self._idle.get(key, [])
        for i, (s, _) in enumerate(idle):
            if s is session:
                del idle[i]
                break
        if not idle:
            self._idle.pop(key, None)
        task = asyncio.get_running_loop().create_task(close_session(session))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def idle_count(self) -> int:
        return sum(len(v) for v in self._idle.values())

    async def close_all(self) -> None:
        """QUIT every idle session (at shutdown)."""
        idle, self._idle = self._idle, {}
        sessions = [s for entries in idle.values() for s, _ in entries]
        for entries in idle.values():
            for _, timer in entries:
                timer.cancel()
        await asyncio.gather(*(close_session(s) for s in sessions), *self._closing, return_exceptions=True)
