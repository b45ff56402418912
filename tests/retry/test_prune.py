"""History is pruned by age (queue.sqlite.history_days) so the logs cannot fill a disk; schema upgrade."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.peers.harness import Harness
from tests.peers.sink import RecordingSink
from tests.retry.helpers import retry_config

T0 = 1_900_000_000.0
D = 86400.0


@pytest.fixture
def sink() -> Iterator[RecordingSink]:
    with RecordingSink("127.0.0.1") as s:
        yield s


def test_old_attempts_events_and_finished_messages_are_pruned(workdir: Path, sink: RecordingSink) -> None:
    """history_days 1: two days later attempts, events and finished messages are gone, queued mail stays."""
    config = retry_config(workdir, sink, retry={"every": "1h", "expire_after": "5d"},
                          queue={"history_days": 1})
    sink.behaviour.rcpt["bob@example.net"] = "550 5.1.1 unknown"
    sink.behaviour.rcpt["dave@example.net"] = "450 4.2.0 busy"

    async def scenario() -> None:
        async with Harness(workdir, config, start=T0) as h:
            done = await h.submit("alice@example.org", ["bob@example.net", "carol@example.net"])
            waiting = await h.submit("alice@example.org", ["dave@example.net"])
            await h.tick()
            assert len(await h.attempts()) == 4  # bob, carol, dave, and the report to alice
            assert await h.events()
            h.clock.advance(2 * D)
            await h.tick()  # prunes first, then retries dave
            assert await h.detail(done) is None, "finished message older than history_days kept"
            assert await h.states(waiting) == {"dave@example.net": "deferred"}, "queued mail was pruned"
            kept = [(a.recipient, a.time) for a in await h.attempts()]
            assert kept == [("dave@example.net", T0 + 2 * D)]
            events = await h.events()
            assert [e.kind for e in events] == ["queue.pruned"]
            assert events[0].data == {"attempts": 4, "events": 2, "messages": 2}
            h.clock.advance(30 * 60)
            await h.tick()
            assert [e.kind for e in await h.events()] == ["queue.pruned"], "pruned more than hourly"

    asyncio.run(scenario())


def test_version_1_queue_is_upgraded(workdir: Path, sink: RecordingSink) -> None:
    """A queue file written before attempts.action existed is upgraded in place when opened."""
    config = retry_config(workdir, sink)

    async def open_close() -> None:
        async with Harness(workdir, config, start=T0):
            pass

    asyncio.run(open_close())
    db = workdir / "queue.sqlite3"
    with sqlite3.connect(db) as conn:
        conn.execute("ALTER TABLE attempts DROP COLUMN action")
        conn.execute("PRAGMA user_version = 1")
    asyncio.run(open_close())
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
        assert "action" in {r[1] for r in conn.execute("PRAGMA table_info(attempts)")}
