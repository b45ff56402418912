"""History is pruned by age (queue.sqlite.history_days) so the logs cannot fill a disk; schema upgrade."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from mailpipe.core.clock import ManualClock
from tests.peers.sink import RecordingSink
from tests.retry.helpers import open_gateway, queue_message, states, write_config

T0 = 1_900_000_000.0
D = 86400.0


@pytest.fixture
def sink():
    with RecordingSink("127.0.0.1") as s:
        yield s


def test_old_attempts_events_and_finished_messages_are_pruned(workdir: Path, sink: RecordingSink) -> None:
    config = write_config(workdir, sink, retry={"every": "1h", "expire_after": "5d"},
                          queue={"history_days": 1})
    sink.behaviour.rcpt["bob@example.net"] = "550 5.1.1 unknown"
    sink.behaviour.rcpt["dave@example.net"] = "450 4.2.0 busy"

    async def scenario() -> None:
        clock = ManualClock(T0)
        gw = await open_gateway(config, clock)
        try:
            done = await queue_message(gw, "alice@example.org", ["bob@example.net", "carol@example.net"])
            waiting = await queue_message(gw, "alice@example.org", ["dave@example.net"])
            await gw.scheduler.tick()
            assert len(await gw.queue.attempts()) == 4  # bob, carol, dave, and the report to alice
            assert await gw.queue.events()
            clock.advance(2 * D)
            await gw.scheduler.tick()  # prunes first, then retries dave
            assert await gw.queue.get(done.id) is None, "finished message older than history_days kept"
            assert await states(gw, waiting.id) == {"dave@example.net": "deferred"}, "queued mail was pruned"
            kept = [(a.recipient, a.time) for a in await gw.queue.attempts()]
            assert kept == [("dave@example.net", T0 + 2 * D)]
            events = await gw.queue.events()
            assert [e.kind for e in events] == ["queue.pruned"]
            assert events[0].data == {"attempts": 4, "events": 2, "messages": 2}
            clock.advance(30 * 60)
            await gw.scheduler.tick()
            assert [e.kind for e in await gw.queue.events()] == ["queue.pruned"], "pruned more than hourly"
        finally:
            await gw.close()

    asyncio.run(scenario())


def test_version_1_queue_is_upgraded(workdir: Path, sink: RecordingSink) -> None:
    """A queue file written before attempts.action existed is upgraded in place when opened."""
    config = write_config(workdir, sink)

    async def open_close() -> None:
        gw = await open_gateway(config, ManualClock(T0))
        await gw.close()

    asyncio.run(open_close())
    db = workdir / "queue.sqlite3"
    with sqlite3.connect(db) as conn:
        conn.execute("ALTER TABLE attempts DROP COLUMN action")
        conn.execute("PRAGMA user_version = 1")
    asyncio.run(open_close())
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
        assert "action" in {r[1] for r in conn.execute("PRAGMA table_info(attempts)")}
