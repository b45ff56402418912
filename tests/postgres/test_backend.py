"""What the postgres backend promises beyond the conformance suite: several processes on one queue.

Leases of owners that stop renewing go to the others, chores run once per cluster, changes
wake the other processes (LISTEN/NOTIFY, also after the listening connection dropped),
attempts and events keep their node, every session commits synchronously, and no text
shows the DSN's password.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import psycopg
import pytest

from mailpipe.core.events import Event
from mailpipe.core.message import Message, RecipientState
from mailpipe.core.queue import QueueError
from mailpipe.core.testing.queue import new_message, update
from mailpipe.plugins.postgres_queue import PostgresQueue
from mailpipe.plugins.postgres_queue.dsn import shown
from tests.peers.harness import until
from tests.peers.postgres import PostgresPeer

from .proxy import TcpProxy

OWNER_1, OWNER_2 = "node1.test:1:aaaa", "node2.test:2:bbbb"


def run(scenario: Callable[[], Awaitable[None]], timeout: float = 60.0) -> None:
    """Run one async scenario, bounded in time."""
    asyncio.run(asyncio.wait_for(scenario(), timeout))


@contextlib.asynccontextmanager
async def opened(*queues: PostgresQueue) -> AsyncIterator[None]:
    """Open ``queues`` for the block; each one opened is closed after it, whatever happened."""
    async with contextlib.AsyncExitStack() as stack:
        for queue in queues:
            await queue.open()
            stack.push_async_callback(queue.close)
        yield


async def subscribed(queue: PostgresQueue) -> asyncio.Event:
    """Subscribe an event to ``queue``'s wake-ups and wait (bounded) until its LISTEN is in force; the event."""
    woken = asyncio.Event()
    queue.subscribe(woken.set)
    assert queue.listener is not None
    await asyncio.wait_for(queue.listener.listening.wait(), 10)
    return woken


async def claimed_new_message(queue: PostgresQueue, owner: str, lease: float) -> Message:
    """Store a message to bob@example.net, due a second ago, and claim it for ``owner`` for ``lease`` seconds."""
    message, data = new_message(time.time() - 1, ["bob@example.net"])
    await queue.store(message, data)
    now = time.time()
    [claimed] = await queue.claim_due(now, 10, owner, now + lease)
    assert claimed.id == message.id
    return claimed


def test_a_silent_owners_claims_go_to_another_process_after_the_lease(pg_dsn: str):
    """Process 1 claims with a long lease and then stops renewing (it is closed without releasing):
    after ``lease`` seconds process 2's claim takes the message, and only then."""

    async def scenario() -> None:
        first, second = PostgresQueue(pg_dsn, lease=2.0), PostgresQueue(pg_dsn, lease=2.0)
        async with opened(first, second):
            message = await claimed_new_message(first, OWNER_1, 3600)
            assert await second.claim_due(time.time(), 10, OWNER_2, time.time() + 60) == []
            await first.close()  # dies: its owner is no longer renewed
            began = time.monotonic()
            taken: list[Any] = []

            async def claimed_by_second() -> bool:
                taken.extend(await second.claim_due(time.time(), 10, OWNER_2, time.time() + 60))
                return bool(taken)

            await until(claimed_by_second, 15, "process 2 taking the message over")
            assert time.monotonic() - began >= 0.5
            assert [m.id for m in taken] == [message.id]

    run(scenario)


def test_a_live_owner_keeps_its_claims_past_the_lease(pg_dsn: str):
    """An open process renews its owners in the background: its claims hold for many leases."""

    async def scenario() -> None:
        first, second = PostgresQueue(pg_dsn, lease=1.0), PostgresQueue(pg_dsn, lease=1.0)
        async with opened(first, second):
            await claimed_new_message(first, OWNER_1, 3600)
            deadline = time.monotonic() + 4.0  # four leases: a negative check over a bounded window
            while time.monotonic() < deadline:
                assert await second.claim_due(time.time(), 10, OWNER_2, time.time() + 60) == []
                assert await second.recover(OWNER_2) == 0
                await asyncio.sleep(0.25)

    run(scenario)


def test_run_once_is_true_for_one_process_per_period(pg_dsn: str):
    """Pruning and alert checks: of two processes asking at once, one runs the chore; again a period later."""

    async def scenario() -> None:
        queues = [PostgresQueue(pg_dsn, node=f"node{n}.test") for n in (1, 2)]
        async with opened(*queues):
            now = time.time()
            answers = await asyncio.gather(*(q.run_once("prune", now, 3600) for q in queues))
            assert sorted(answers) == [False, True]
            assert [await q.run_once("prune", now + 1800, 3600) for q in queues] == [False, False]
            assert await queues[1].run_once("alerts", now, 60) is True
            assert await queues[0].run_once("prune", now + 3600, 3600) is True

    run(scenario)


def test_changes_made_by_one_process_wake_the_others(pg_dsn: str):
    """New mail, a retry, a release of a hold in process 1 each wake process 2's scheduler within seconds."""

    async def scenario() -> None:
        first, second = PostgresQueue(pg_dsn), PostgresQueue(pg_dsn)
        async with opened(first, second):
            woken = await subscribed(second)

            async def wakes(change: Callable[[], Awaitable[Any]]) -> None:
                woken.clear()
                await change()
                await asyncio.wait_for(woken.wait(), 2.0)

            message, data = new_message(time.time(), ["bob@example.net"])
            await wakes(lambda: first.store(message, data))
            now = time.time()
            [claimed] = await first.claim_due(now, 10, OWNER_1, now + 300)
            await first.record(claimed, [update(claimed, "bob@example.net", RecipientState.DEFERRED, now,
                                                now + 3600)], now)
            await first.release(message.id, OWNER_1)
            await wakes(lambda: first.retry_now([message.id], time.time()))
            await first.hold([message.id])
            await wakes(lambda: first.release_hold([message.id], time.time()))

    run(scenario)


def test_the_listener_reconnects_and_wakes_after_its_connection_dropped(postgres: PostgresPeer, pg_dsn: str):
    """The LISTEN connection is cut: the listener connects again (with backoff) and wakes the scheduler."""
    with TcpProxy(postgres.host, postgres.port) as proxy:
        behind = re.sub(r"@[^/]+/", f"@{proxy.host}:{proxy.port}/", pg_dsn)

        async def scenario() -> None:
            listening, direct = PostgresQueue(behind), PostgresQueue(pg_dsn)
            async with opened(listening, direct):
                woken = await subscribed(listening)
                assert listening.listener is not None
                proxy.block()
                await until(lambda: not listening.listener.listening.is_set(), 15, "the cut noticed")
                woken.clear()
                proxy.unblock()
                await asyncio.wait_for(woken.wait(), 15)  # woken at once on reconnection
                woken.clear()
                message, data = new_message(time.time(), ["bob@example.net"])
                await direct.store(message, data)
                await asyncio.wait_for(woken.wait(), 2.0)

        run(scenario)


def test_attempts_and_events_keep_the_node_that_made_them(pg_dsn: str):
    """``node`` of attempts and events is stored and returned; the message keeps the node that received it."""

    async def scenario() -> None:
        queue = PostgresQueue(pg_dsn, node="node1.test")
        async with opened(queue):
            message, data = new_message(time.time(), ["bob@example.net"])
            await queue.store(message, data)
            now = time.time()
            [claimed] = await queue.claim_due(now, 10, OWNER_1, now + 300)
            line = update(claimed, "bob@example.net", RecipientState.DELIVERED, now)
            line.attempt.node = "node2.test"
            await queue.record(claimed, [line], now)
            event = Event(now, "message.delivered", "delivered", node="node2.test")
            queue.add_event(event)
            assert [a.node for a in await queue.attempts(message=message.id)] == ["node2.test"]
            assert await queue.events(since=now) == [event]
        with psycopg.connect(pg_dsn) as conn:
            assert conn.execute("SELECT node FROM messages WHERE id = %s", (message.id,)).fetchone() == (
                "node1.test",)

    run(scenario)


def test_every_session_commits_synchronously_even_if_the_role_says_otherwise(postgres: PostgresPeer, pg_dsn: str):
    """A role with ``synchronous_commit = off``: the pool's sessions turn it back on before any use."""
    postgres.sql("DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'lazy') THEN "
                 "CREATE ROLE lazy LOGIN SUPERUSER; END IF; END $$")
    postgres.sql("ALTER ROLE lazy SET synchronous_commit = off")
    dsn = pg_dsn.replace("postgresql://postgres@", "postgresql://lazy@")
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SHOW synchronous_commit").fetchone() == ("off",)

    async def scenario() -> None:
        queue = PostgresQueue(dsn, pool_size=3)
        async with opened(queue):
            assert queue.db.pool is not None
            for _ in range(3):
                async with queue.db.pool.connection() as conn:
                    row = await (await conn.execute("SHOW synchronous_commit")).fetchone()
                    assert row == ("on",)

    run(scenario)


def test_dsns_are_shown_without_their_password():
    """URIs and key=value strings lose the password (in the user info or as a parameter)."""
    assert shown("postgresql://mailpipe:s3cret@db.example:5432/mailpipe?sslmode=require") == \
        "postgresql://mailpipe@db.example:5432/mailpipe?sslmode=require"
    assert shown("postgres://db.example/mailpipe?password=s3cret&application_name=x") == \
        "postgres://db.example/mailpipe?application_name=x"
    assert "s3cret" not in shown("host=db.example dbname=mailpipe user=mailpipe password=s3cret")
    assert "db.example" in shown("host=db.example dbname=mailpipe user=mailpipe password=s3cret")
    assert shown("host='unterminated password=s3cret") == "(unparsable DSN)"


def test_a_store_while_the_database_is_away_raises_and_keeps_nothing(postgres: PostgresPeer, pg_dsn: str):
    """``store`` with the network cut raises ``QueueError`` within the timeout; later the message is unknown."""
    with TcpProxy(postgres.host, postgres.port) as proxy:
        behind = re.sub(r"@[^/]+/", f"@{proxy.host}:{proxy.port}/", pg_dsn)

        async def scenario() -> None:
            queue = PostgresQueue(behind, timeout=2.0)
            async with opened(queue):
                proxy.block()
                message, data = new_message(time.time(), ["bob@example.net"])
                began = time.monotonic()
                with pytest.raises(QueueError, match="unreachable"):
                    await queue.store(message, data)
                assert time.monotonic() - began < 10
                proxy.unblock()
                await until(lambda: _known(queue, message.id, False), 15, "the database back")

        run(scenario)


async def _known(queue: PostgresQueue, message_id: str, expected: bool) -> bool:
    """Whether the queue answers, and knows ``message_id`` as ``expected``."""
    try:
        return (await queue.get(message_id) is not None) == expected
    except QueueError:
        return False
