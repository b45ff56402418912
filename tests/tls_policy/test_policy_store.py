"""The queue's optional key-value face (``KeyValueStore``), where direct keeps MTA-STS policies and report
counts: on the SQLite file and on a private PostgreSQL 15, durable across a reopen, shared by two nodes."""

from __future__ import annotations

import asyncio
from pathlib import Path

from mailpipe.core.queue import KeyValueStore
from mailpipe.plugins.postgres_queue import PostgresQueue
from mailpipe.plugins.sqlite_queue.store import SqliteQueue
from tests.peers.postgres import PostgresPeer


async def _exercise(open_queue) -> None:  # noqa: ANN001 - a coroutine function that opens a fresh handle
    first = await open_queue()
    assert isinstance(first, KeyValueStore)
    try:
        assert await first.kv_get("mta-sts", "example.test") is None
        await first.kv_put("mta-sts", "example.test", '{"id": "1"}')
        await first.kv_put("mta-sts", "example.test", '{"id": "2"}')  # replaces
        await first.kv_put("mta-sts", "other.test", "x")
        await first.kv_put("tls-reports", "2027-01-15|example.test|gw", "{}")
        assert await first.kv_items("mta-sts") == {"example.test": '{"id": "2"}', "other.test": "x"}
        assert await first.kv_items("tls-reports", "2027-01-15|") == {"2027-01-15|example.test|gw": "{}"}
        assert await first.kv_items("tls-reports", "2027-01-16|") == {}
        await first.kv_delete("mta-sts", "other.test")
        await first.kv_delete("mta-sts", "never.test")  # nothing to delete: no error
    finally:
        await first.close()
    again = await open_queue()  # a restart, or another node
    try:
        assert await again.kv_get("mta-sts", "example.test") == '{"id": "2"}'
        assert await again.kv_get("mta-sts", "other.test") is None
    finally:
        await again.close()


def test_sqlite_queue_keeps_values(tmp_path: Path) -> None:
    async def open_queue() -> SqliteQueue:
        queue = SqliteQueue(tmp_path / "queue.db")
        await queue.open()
        return queue

    asyncio.run(_exercise(open_queue))


def test_postgres_queue_keeps_values_and_nodes_create_the_table_together(postgres: PostgresPeer) -> None:
    dsn = postgres.create_database()

    async def open_queue() -> PostgresQueue:
        queue = PostgresQueue(dsn, node="gw", pool_size=2)
        await queue.open()
        return queue

    async def two_nodes_at_once() -> None:
        one, two = await open_queue(), await open_queue()
        try:  # the first use of both makes the table: one waits for the other, neither fails
            await asyncio.gather(one.kv_put("n", "one", "1"), two.kv_put("n", "two", "2"))
            assert await one.kv_items("n") == {"one": "1", "two": "2"}
        finally:
            await one.close()
            await two.close()

    asyncio.run(two_nodes_at_once())
    asyncio.run(_exercise(open_queue))
