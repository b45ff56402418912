"""The queue keeps a message held at intake (``message.hold`` in ``accept``): stored held, never claimed,
due once released. Each backend that ships with mailpipe keeps this promise."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from mailpipe.core.message import Message, Recipient, RecipientState
from mailpipe.plugins.postgres_queue.store import PostgresQueue
from mailpipe.plugins.sqlite_queue.store import SqliteQueue

T0 = 1_800_000_000.0


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> SqliteQueue | PostgresQueue:
    if request.param == "sqlite":
        return SqliteQueue(tmp_path / "queue.sqlite3")
    return PostgresQueue(request.getfixturevalue("pg_dsn"), node="test", pool_size=2)


def test_held_at_intake(backend: SqliteQueue | PostgresQueue) -> None:
    async def run() -> None:
        await backend.open()
        try:
            message = Message("held1", "joe@ex-employee.example", [Recipient("a@remote.example")], T0)
            message.hold("rule 'ex-employees'")
            message.add_recipient("audit@corp.example")  # a bcc after the hold is held too
            await backend.store(message, b"Subject: x\r\n\r\nbody\r\n")
            normal = Message("plain1", "alice@corp.example", [Recipient("b@remote.example")], T0)
            await backend.store(normal, b"Subject: y\r\n\r\nbody\r\n")
            claimed = await backend.claim_due(T0 + 1, 10, "owner", T0 + 600)
            assert [m.id for m in claimed] == ["plain1"]
            await backend.release("plain1", "owner")
            assert [s.id for s in await backend.list(state="held")] == ["held1"]
            detail = await backend.get("held1")
            assert detail is not None
            assert {r.state for r in detail.message.recipients} == {RecipientState.HELD}
            assert detail.message.held == "rule 'ex-employees'"
            assert await backend.release_hold(["held1"], T0 + 2) == 2
            claimed = await backend.claim_due(T0 + 3, 10, "owner", T0 + 600)
            assert {m.id for m in claimed} == {"held1", "plain1"}
        finally:
            await backend.close()

    asyncio.run(run())
