"""The optional key-value face (``KeyValueStore``) on the SQLite queue file: one small table.

The table is made on first use (``CREATE TABLE IF NOT EXISTS``), so queue files made before
it existed need no migration and a queue that nobody asks for values never has it. Writes
are durable commits through the queue's worker, like every other change.
"""

from __future__ import annotations

import sqlite3
from functools import partial
from typing import Any

from mailpipe.core.queue import KeyValueStore

_TABLE = """CREATE TABLE IF NOT EXISTS kv (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (namespace, key)
) WITHOUT ROWID"""


def _create(conn: sqlite3.Connection) -> None:
    conn.execute(_TABLE)


def _get(conn: sqlite3.Connection, namespace: str, key: str) -> str | None:
    row = conn.execute("SELECT value FROM kv WHERE namespace = ? AND key = ?", (namespace, key)).fetchone()
    return row[0] if row else None


def _put(conn: sqlite3.Connection, namespace: str, key: str, value: str) -> None:
    conn.execute("INSERT INTO kv (namespace, key, value) VALUES (?, ?, ?) "
                 "ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value",
                 (namespace, key, value))


def _delete(conn: sqlite3.Connection, namespace: str, key: str) -> None:
    conn.execute("DELETE FROM kv WHERE namespace = ? AND key = ?", (namespace, key))


def _items(conn: sqlite3.Connection, namespace: str, prefix: str) -> dict[str, str]:
    rows = conn.execute("SELECT key, value FROM kv WHERE namespace = ? AND substr(key, 1, ?) = ? ORDER BY key",
                        (namespace, len(prefix), prefix)).fetchall()
    return dict(rows)


class SqliteKeyValue(KeyValueStore):
    """``KeyValueStore`` for ``SqliteQueue`` (a mixin: it uses the queue's ``_run``)."""

    _kv_ready = False

    async def _kv(self, fn: Any, *, write: bool = False) -> Any:
        run = self._run  # type: ignore[attr-defined]
        if not self._kv_ready:
            await run(_create, write=True)
            self._kv_ready = True
        return await run(fn, write=write)

    async def kv_get(self, namespace: str, key: str) -> str | None:
        """The value of ``key`` in ``namespace``, or None (called by plugins such as ``direct``)."""
        return await self._kv(partial(_get, namespace=namespace, key=key))

    async def kv_put(self, namespace: str, key: str, value: str) -> None:
        """Store the value of ``key`` durably (one commit with ``synchronous=FULL``)."""
        await self._kv(partial(_put, namespace=namespace, key=key, value=value), write=True)

    async def kv_delete(self, namespace: str, key: str) -> None:
        """Forget ``key``."""
        await self._kv(partial(_delete, namespace=namespace, key=key), write=True)

    async def kv_items(self, namespace: str, prefix: str = "") -> dict[str, str]:
        """The keys of ``namespace`` starting with ``prefix``, with their values, in key order."""
        return await self._kv(partial(_items, namespace=namespace, prefix=prefix))
