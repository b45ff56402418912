"""One pool of outbound SMTP sessions, shared by the messages that may share a connection.

Sessions are kept per ``PoolKey`` (destination, port, TLS policy, login
identity): only messages with the same key share one. A session is taken for
one message and given back afterwards. A kept session is handed out with
``probe`` set: its next transaction opens with RSET, to be answered within
``probe_timeout`` (in the same write as MAIL, RCPT and DATA when the server
pipelines, ``transaction.send``), which also shows it is still alive; one the
server closed meanwhile is dropped and the next taken (``transaction.send_pooled``). At most
``max_connections`` sessions exist at once (busy, idle and opening); at the cap
an idle session of another key is closed to make room, else the caller waits.
A session is closed after ``max_messages`` messages, after ``idle_timeout``
unused, when the transaction left it in an unknown state, and at shutdown (QUIT).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass

from .session import Session
from .tls import TlsPolicy

#: Opens a new session for a key (raises ``OutboundError``).
Opener = Callable[[], Awaitable[Session]]


@dataclass(frozen=True)
class PoolKey:
    """What makes sessions interchangeable: where they go, how (TLS), and under which login.

    ``destination`` is the MX host name (direct) or the list of smarthost
    servers with their ports (then ``port`` is 0); ``identity`` describes the
    login, empty for none.
    """

    destination: str
    port: int
    tls: TlsPolicy
    identity: tuple[str, ...] = ()


class ConnectionPool:
    """Sessions kept for reuse per ``PoolKey``, under a cap on all sessions; see the module text."""

    def __init__(
        self, *, max_connections: int, max_messages: int, idle_timeout: float, probe_timeout: float,
        reuse: bool = True,
    ) -> None:
        self.max_connections = max_connections
        self.max_messages = max_messages
        self.idle_timeout = idle_timeout
        self.probe_timeout = probe_timeout
        self.reuse = reuse and idle_timeout > 0
        self.closed = False
        self._idle: dict[Hashable, list[Session]] = {}
        self._freed = asyncio.Event()
        self._closing: set[asyncio.Task[None]] = set()
        self._count = self._opened = self._reused = 0

    @property
    def count(self) -> int:
        """Sessions that exist now: busy, idle and being opened."""
        return self._count

    @property
    def idle_count(self) -> int:
        """Sessions kept for reuse now."""
        return sum(len(idle) for idle in self._idle.values())

    @property
    def opened(self) -> int:
        """Sessions opened since start."""
        return self._opened

    @property
    def reused(self) -> int:
        """Times a kept session was used again."""
        return self._reused

    async def acquire(self, key: PoolKey, open_new: Opener) -> Session:
        """A session for ``key``: a kept one (with ``probe`` set), else a new one from ``open_new``.

        Called by the delivery plugins before each transaction; waits while the
        pool is at its cap. Exceptions of ``open_new`` pass through (its place
        under the cap is given back).
        """
        while True:
            session = self._take_idle(key)
            if session is not None:
                self._reused += 1
                return session
            if self._count < self.max_connections or self._evict_other(key):
                break
            self._freed.clear()
            await self._freed.wait()
        self._count += 1
        try:
            session = await open_new()
        except BaseException:
            self._count -= 1
            self._freed.set()
            raise
        session.key = key
        self._opened += 1
        return session

    def release(self, session: Session, *, reusable: bool) -> None:
        """Give ``session`` back after one message: kept when ``reusable`` and not used up, else closed."""
        session.messages += 1
        if (reusable and self.reuse and not self.closed and session.messages < self.max_messages
                and session.client.is_connected):
            session.idle_since = time.monotonic()
            session.expiry = asyncio.get_running_loop().call_later(self.idle_timeout, self._expire, session)
            self._idle.setdefault(session.key, []).append(session)
            self._freed.set()
        else:
            self._discard(session)

    async def close(self) -> None:
        """QUIT every kept session (called at shutdown); busy ones are closed when given back."""
        self.closed = True
        for idle in list(self._idle.values()):
            for session in list(idle):
                self._expire(session)
        if self._closing:
            await asyncio.wait(self._closing, timeout=self.probe_timeout)

    def _take_idle(self, key: PoolKey) -> Session | None:
        while idle := self._idle.get(key):
            session = idle[-1]  # the most recently used
            self._unidle(session)
            if not session.client.is_connected:  # the server's close already arrived
                self._discard(session)
                continue
            session.probe = self.probe_timeout
            return session
        return None

    def _evict_other(self, key: PoolKey) -> bool:
        """Close the longest-idle session of another key to make room; True if there was one."""
        others = [idle[0] for k, idle in self._idle.items() if k != key]
        if not others:
            return False
        self._expire(min(others, key=lambda s: s.idle_since))
        return True

    def _unidle(self, session: Session) -> None:
        idle = self._idle[session.key]
        idle.remove(session)
        if not idle:
            del self._idle[session.key]
        if session.expiry is not None:
            session.expiry.cancel()

    def _expire(self, session: Session) -> None:
        self._unidle(session)
        self._discard(session)

    def _discard(self, session: Session) -> None:
        """Forget ``session`` (its place under the cap is free at once) and QUIT it in the background."""
        self._count -= 1
        task = asyncio.get_running_loop().create_task(session.quit())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
        self._freed.set()
