"""The optional key-value face (``KeyValueStore``) in the PostgreSQL queue database: one small table.

The table is made on first use (``CREATE TABLE IF NOT EXISTS`` under a transaction-level
advisory lock, so nodes that start together do not race), so databases made before it
existed need no migration. Every call is one committed transaction of the queue's pool.
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

from mailpipe.core.queue import KeyValueStore

KV_LOCK = 0x6D61696C6B760001  # the advisory lock key taken while the table is made

_TABLE = """CREATE TABLE IF NOT EXISTS kv (
    namespace text NOT NULL,
    key text NOT NULL,
    value text NOT NULL,
    PRIMARY KEY (namespace, key))"""


async def _create(conn: AsyncConnection[Any]) -> None:
    await conn.execute("SELECT pg_advisory_xact_lock(%s)", [KV_LOCK])
    await conn.execute(_TABLE)


class PostgresKeyValue(KeyValueStore):
    """``KeyValueStore`` for ``PostgresQueue`` (a mixin: it uses the queue's ``_run``)."""

    _kv_ready = False

    async def _kv(self, job: Any) -> Any:
        run = self._run  # type: ignore[attr-defined]
        if not self._kv_ready:
            await run(_create)
            self._kv_ready = True
        return await run(job)

    async def kv_get(self, namespace: str, key: str) -> str | None:
        """The value of ``key`` in ``namespace``, or None (called by plugins such as ``direct``)."""

        async def job(conn: AsyncConnection[Any]) -> str | None:
            cur = await conn.execute("SELECT value FROM kv WHERE namespace = %s AND key = %s", [namespace, key])
            row = await cur.fetchone()
            return row[0] if row else None

        return await self._kv(job)

    async def kv_put(self, namespace: str, key: str, value: str) -> None:
        """Store the value of ``key`` (committed when this returns)."""

        async def job(conn: AsyncConnection[Any]) -> None:
            await conn.execute("INSERT INTO kv (namespace, key, value) VALUES (%s, %s, %s) "
                               "ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value",
                               [namespace, key, value])

        await self._kv(job)

    async def kv_delete(self, namespace: str, key: str) -> None:
        """Forget ``key``."""

        async def job(conn: AsyncConnection[Any]) -> None:
            await conn.execute("DELETE FROM kv WHERE namespace = %s AND key = %s", [namespace, key])

        await self._kv(job)

    async def kv_items(self, namespace: str, prefix: str = "") -> dict[str, str]:
        """The keys of ``namespace`` starting with ``prefix``, with their values, in key order."""

        async def job(conn: AsyncConnection[Any]) -> dict[str, str]:
            cur = await conn.execute("SELECT key, value FROM kv WHERE namespace = %s AND starts_with(key, %s) "
                                     "ORDER BY key", [namespace, prefix])
            return {k: v for k, v in await cur.fetchall()}

        return await self._kv(job)
