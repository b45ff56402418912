"""The connection pool to the queue database, its transactions, and what its errors mean to the queue.

``Database.run(job)`` runs ``await job(conn)`` in one transaction on a pooled connection and
returns once the COMMIT is acknowledged: every session has ``synchronous_commit`` on (checked
when the pool opens a connection, forced if the server or role turned it off), so an
acknowledged COMMIT is on the server's disk. Errors become queue errors: ``QueueFull`` for a
full disk, ``Unreachable`` (a ``QueueError``) when the server cannot be reached or the
connection dropped, a plain ``QueueError`` for the rest. Deadlocks and serialization failures
are retried. An outage is logged once when it starts and once when it ends; the pool reconnects
by itself, with backoff.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from mailpipe.core.queue import QueueError, QueueFull

from .dsn import shown
from .schema import migrate

log = logging.getLogger("mailpipe.queue.postgres")
# The pool logs every failed reconnection attempt; this backend logs an outage once instead.
logging.getLogger("psycopg.pool").setLevel(logging.ERROR)

T = TypeVar("T")
Job = Callable[[AsyncConnection[Any]], Awaitable[T]]

RETRIED_STATES = {"40001", "40P01"}  # serialization failure, deadlock: the transaction is simply run again
UNREACHABLE_STATES = {"57P01", "57P02", "57P03"}  # admin/crash shutdown, cannot connect now
RETRIES = 4


class Unreachable(QueueError):
    """The queue database cannot be reached, or the connection dropped (maybe during COMMIT)."""


def one_line(exc: BaseException) -> str:
    """An error's text on one line (libpq's messages span several)."""
    return re.sub(r"\s+", " ", str(exc)).strip() or type(exc).__name__


def translate(exc: BaseException, where: str) -> QueueError:
    """The queue error for a driver or pool error; ``where`` is the DSN without its password."""
    if isinstance(exc, QueueError):
        return exc
    state = getattr(exc, "sqlstate", None)
    if isinstance(exc, psycopg.errors.DiskFull) or state == "53100":
        return QueueFull(f"queue database {where}: storage is full ({one_line(exc)})")
    if isinstance(exc, PoolTimeout | TimeoutError) or state in UNREACHABLE_STATES or (state or "").startswith("08") or (
            state is None and isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)):
        return Unreachable(f"queue database {where} unreachable: {one_line(exc)}")
    return QueueError(f"queue database {where}: {one_line(exc)}")


class Database:
    """The pool of one node's connections to the queue database (``pool_size`` at most)."""

    def __init__(self, dsn: str, *, pool_size: int, timeout: float, application_name: str) -> None:
        self.dsn = dsn
        self.where = shown(dsn)
        self.pool_size = pool_size
        self.timeout = timeout
        self.kwargs: dict[str, Any] = {"application_name": application_name[:63],
                                       "connect_timeout": max(2, int(timeout))}
        self.pool: AsyncConnectionPool[AsyncConnection[Any]] | None = None
        self.down_since: float | None = None

    # -- life -----------------------------------------------------------------------------------

    async def connect(self, *, autocommit: bool = True) -> AsyncConnection[Any]:
        """A connection of its own (schema migration, LISTEN); ``Unreachable`` when it cannot be made."""
        try:
            conn = await AsyncConnection.connect(self.dsn, autocommit=autocommit, **self.kwargs)
            await self._ensure_durable(conn)
            return conn
        except (psycopg.Error, OSError) as exc:
            raise translate(exc, self.where) from exc

    async def open(self) -> None:
        """Check the server, create or migrate the schema, open the pool; ``QueueError`` naming the DSN."""
        conn = await self.connect()
        try:
            async with conn:
                row = await (await conn.execute("SHOW fsync")).fetchone()
                if row and row[0] != "on":
                    log.warning("queue database %s runs with fsync=%s: a power loss can lose mail it "
                                "acknowledged", self.where, row[0])
                await migrate(conn, self.where)
        except (psycopg.Error, OSError) as exc:
            raise translate(exc, self.where) from exc
        pool: AsyncConnectionPool[AsyncConnection[Any]] = AsyncConnectionPool(
            self.dsn, min_size=min(2, self.pool_size), max_size=self.pool_size, kwargs=dict(self.kwargs),
            configure=self._ensure_durable, check=AsyncConnectionPool.check_connection,
            timeout=self.timeout, open=False, name="mailpipe-queue", reconnect_timeout=3600.0,
        )
        try:
            await pool.open(wait=True, timeout=self.timeout)
        except (psycopg.Error, PoolTimeout, OSError) as exc:
            await pool.close()
            raise translate(exc, self.where) from exc
        self.pool = pool

    async def close(self) -> None:
        """Close every pooled connection (waiting a little for those in use)."""
        if self.pool is not None:
            pool, self.pool = self.pool, None
            await pool.close(timeout=5.0)

    @staticmethod
    async def _ensure_durable(conn: AsyncConnection[Any]) -> None:
        """Each new session: ``synchronous_commit`` must not be off (a role or the server may say so)."""
        autocommit = conn.autocommit
        await conn.set_autocommit(True)
        row = await (await conn.execute("SHOW synchronous_commit")).fetchone()
        if not row or row[0] == "off":
            await conn.execute("SET synchronous_commit = on")
        await conn.set_autocommit(autocommit)

    # -- transactions --------------------------------------------------------------------------------

    async def run(self, job: Job[T]) -> T:
        """Run ``job`` in one transaction; its result.

        Returns after COMMIT was acknowledged. Deadlocks and serialization failures are run
        again; other errors raise the ``QueueError`` of ``translate`` (nothing was committed,
        except when the connection dropped during COMMIT: then ``Unreachable`` is all one knows).
        """
        for attempt in range(RETRIES):
            try:
                result = await self._once(job)
            except (psycopg.Error, PoolTimeout, OSError) as exc:
                if getattr(exc, "sqlstate", None) in RETRIED_STATES and attempt + 1 < RETRIES:
                    await asyncio.sleep(0.01 * (attempt + 1))
                    continue
                error = translate(exc, self.where)
                if isinstance(error, Unreachable):
                    self.mark_down(error)
                raise error from exc
            self.mark_up()
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    async def _once(self, job: Job[T]) -> T:
        if self.pool is None:
            raise QueueError(f"queue database {self.where} is not open")
        async with self.pool.connection() as conn, conn.transaction():
            return await job(conn)

    # -- outages --------------------------------------------------------------------------------------

    def mark_down(self, error: QueueError) -> None:
        """An operation found the database unreachable: log it, once per outage."""
        if self.down_since is None:
            self.down_since = time.monotonic()
            log.error("%s; mail is not accepted (451) and deliveries pause until it is back; "
                      "reconnecting with backoff", error)

    def mark_up(self) -> None:
        """An operation succeeded: if an outage was logged, log its end."""
        if self.down_since is not None:
            log.warning("queue database %s reachable again after %.1fs", self.where,
                        time.monotonic() - self.down_since)
            self.down_since = None
