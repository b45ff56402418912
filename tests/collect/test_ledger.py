"""The collection ledger (``CollectionLedger``) of both queue backends: a message and its UIDL mark in one
transaction, a second store of the same mark storing nothing (also when two processes race), held recipients."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from mailpipe.core.ids import new_queue_id
from mailpipe.core.message import Message, Recipient, RecipientState, SessionInfo
from mailpipe.core.queue import CollectionLedger, QueueBackend
from mailpipe.plugins.postgres_queue import PostgresQueue
from mailpipe.plugins.sqlite_queue import SqliteQueue
from tests.postgres.conftest import pg_dsn  # noqa: F401 - fixture shared with the postgres tests (postgres: tests/peers)

SOURCE = "office@pop.isp.test:995"
DATA = b"From: a@x.test\r\nSubject: s\r\n\r\nbody\r\n"


def collected_message(*held: str) -> Message:
    rcpts = [Recipient("a@corp.test"), *(Recipient(h, state=RecipientState.HELD) for h in held)]
    return Message(new_queue_id(), "s@x.test", rcpts, time.time(), session=SessionInfo("192.0.2.1", "pop.isp.test"))


async def exercise(make: Any) -> None:
    queue: QueueBackend = make()
    other: QueueBackend = make()
    await queue.open()
    await other.open()
    try:
        assert isinstance(queue, CollectionLedger)
        now = time.time()
        first = collected_message("b@corp.test")
        assert await queue.store_collected(first, DATA, SOURCE, "uid-1", now) is True
        again = collected_message()
        assert await queue.store_collected(again, DATA, SOURCE, "uid-1", now) is False
        assert await queue.get(again.id) is None
        detail = await queue.get(first.id)
        assert detail is not None
        assert {r.address: r.state for r in detail.message.recipients} == {
            "a@corp.test": RecipientState.PENDING, "b@corp.test": RecipientState.HELD}
        assert set(await queue.collected(SOURCE)) == {"uid-1"}
        assert await queue.collected("someone@else:110") == {}

        race = [collected_message() for _ in range(2)]  # two processes fetched the same message at once
        won = await asyncio.gather(queue.store_collected(race[0], DATA, SOURCE, "uid-2", now),
                                   other.store_collected(race[1], DATA, SOURCE, "uid-2", now))
        assert sorted(won) == [False, True]
        assert sum([await queue.get(m.id) is not None for m in race]) == 1

        assert await queue.mark_collected(SOURCE, "uid-3", now, note="554 refused") is True
        assert await queue.mark_collected(SOURCE, "uid-3", now) is False
        assert set(await other.collected(SOURCE)) == {"uid-1", "uid-2", "uid-3"}
        assert await queue.forget_collected(SOURCE, ["uid-1", "uid-3", "uid-9"]) == 2
        assert set(await queue.collected(SOURCE)) == {"uid-2"}
    finally:
        await queue.close()
        await other.close()


def test_sqlite_ledger(tmp_path: Path) -> None:
    asyncio.run(exercise(lambda: SqliteQueue(tmp_path / "queue.sqlite3")))


@pytest.mark.timeout(120)
def test_postgres_ledger(pg_dsn: str) -> None:  # noqa: F811
    asyncio.run(exercise(lambda: PostgresQueue(pg_dsn, node="ledger", pool_size=2)))
