"""Reusing SMTP connections to the smarthost: a capped pool keyed by login identity.

A connection is taken for one message and given back afterwards; before it is
used again it gets RSET (which also shows it is still alive). Connections of
different keys (different logins) are never shared. At most
``max_connections`` exist at once, counting busy, idle and opening ones; when
the cap is reached, an idle connection of another login is closed to make
room, else the caller waits. A connection is closed after
``max_messages`` messages, after ``idle_timeout`` unused, and at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field

import aiosmtplib

from ..outbound.connection import Endpoint, close_quietly


@dataclass(eq=False)
class PooledConnection:
    """One logged-in connection: the client, where it goes, and how much it was used."""

    client: aiosmtplib.SMTP
    endpoint: Endpoint
    key: Hashable = None
    mechanism: str | None = None
    messages: int = 0
    idle_since: float = field(default_factory=time.monotonic)


class ConnectionPool:
    """Connections to one smarthost, shared per login identity (``key``); see the module text."""

    def __init__(self, max_connections: int, max_messages: int, idle_timeout: float,
                 rset_timeout: float = 30.0) -> None:
        self.max_connections = max_connections
        self.max_messages = max_messages
        self.idle_timeout = idle_timeout
        self.rset_timeout = rset_timeout
        self.count = 0  # busy + idle + opening
        self.opened = 0  # connections made since start (for tests and stats)
        self._idle: dict[Hashable, list[PooledConnection]] = {}
        self._waiters: list[asyncio.Future[None]] = []
        self._closing: set[asyncio.Task[None]] = set()
        self._reaper: asyncio.Task[None] | None = None
        self.closed = False

    @property
    def idle_count(self) -> int:
        return sum(len(v) for v in self._idle.values())

    async def acquire(
        self, key: Hashable, open_new: Callable[[], Awaitable[PooledConnection]]
    ) -> PooledConnection:
        """A connection for ``key``: an idle one after a good RSET, or a new one from ``open_new``.

        Exceptions of ``open_new`` pass through (the slot is given back).
        """
        while True:
            if self.closed:
                raise RuntimeError("the smarthost connection pool is closed")
            conn = self._take_idle(key)
            if conn is not None:
                if await self._reset(conn):
                    return conn
                self._discard(conn)
                continue
            if self.count < self.max_connections or self._evict_other(key):
                self.count += 1
                break
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        try:
            conn = await open_new()
        except BaseException:
            self.count -= 1
            self._wake()
            raise
        conn.key = key
        self.opened += 1
        return conn

    def release(self, conn: PooledConnection, *, reusable: bool) -> None:
        """Give a connection back after one message; kept for reuse when ``reusable`` and not used up."""
        conn.messages += 1
        if (reusable and not self.closed and conn.messages < self.max_messages
                and conn.client.is_connected):
            conn.idle_since = time.monotonic()
            self._idle.setdefault(conn.key, []).append(conn)
            self._wake()
            self._start_reaper()
        else:
            self._discard(conn)

    async def close(self) -> None:
        """Close every idle connection now; busy ones are closed when given back."""
        self.closed = True
        if self._reaper is not None:
            self._reaper.cancel()
        for conns in list(self._idle.values()):
            for conn in list(conns):
                self._discard(conn)
        self._idle.clear()
        self._wake()
        if self._closing:
            await asyncio.wait(list(self._closing), timeout=self.rset_timeout)

    # -- internals --------------------------------------------------------------------------

    def _take_idle(self, key: Hashable) -> PooledConnection | None:
        conns = self._idle.get(key)
        while conns:
            conn = conns.pop()  # most recently used first
            if conn.client.is_connected and time.monotonic() - conn.idle_since < self.idle_timeout:
                return conn
            self._discard(conn, counted=True, was_idle=False)
        return None

    def _evict_other(self, key: Hashable) -> bool:
        """Close the longest-idle connection of another key to free its slot; True if one was."""
        oldest: PooledConnection | None = None
        for k, conns in self._idle.items():
            if k != key and conns and (oldest is None or conns[0].idle_since < oldest.idle_since):
                oldest = conns[0]
        if oldest is None:
            return False
        self._idle[oldest.key].remove(oldest)
        self._discard(oldest)
        return True

    async def _reset(self, conn: PooledConnection) -> bool:
        try:
            await conn.client.rset(timeout=self.rset_timeout)
            return True
        except Exception:  # noqa: BLE001 - closed by the server while idle, timed out
            return False

    def _discard(self, conn: PooledConnection, *, counted: bool = True, was_idle: bool = False) -> None:
        """Forget a connection (its slot is free at once) and QUIT it in the background."""
        if was_idle and conn in self._idle.get(conn.key, []):
            self._idle[conn.key].remove(conn)
        if counted:
            self.count -= 1
        task = asyncio.ensure_future(close_quietly(conn.client))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
        self._wake()

    def _wake(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    def _start_reaper(self) -> None:
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.ensure_future(self._reap())

    async def _reap(self) -> None:
        """Close connections idle for ``idle_timeout``; ends when none are idle."""
        while self._idle and not self.closed:
            now = time.monotonic()
            earliest = None
            for conns in self._idle.values():
                for conn in list(conns):
                    if now - conn.idle_since >= self.idle_timeout:
                        conns.remove(conn)
                        self._discard(conn)
                    elif earliest is None or conn.idle_since < earliest:
                        earliest = conn.idle_since
            for k in [k for k, v in self._idle.items() if not v]:
                del self._idle[k]
            if earliest is None:
                return
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(earliest + self.idle_timeout - now)
                continue
            return
