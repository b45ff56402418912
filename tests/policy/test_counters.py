"""The queue's shared counters (``SharedCounters``): sqlite and postgres keep them, every process sees them.

The same promises for each backend (and the in-memory fallback): a take fits or names the
next slot; all requests of one take or none; counts survive a restart (close and open again);
two queue instances on the same store (two workers, two nodes) never both fit into the last
slot, however their takes interleave.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from mailpipe.core.queue import COUNTER_BUCKETS, CounterRequest, SharedCounters
from mailpipe.plugins.limits.memory import MemoryCounters
from mailpipe.plugins.postgres_queue.store import PostgresQueue
from mailpipe.plugins.sqlite_queue.store import SqliteQueue

T0 = 1_800_000_000.0  # a whole hour: 14:00-style arithmetic stays readable
HOUR = 3600.0
Opener = Callable[[], Any]


def hourly(key: str = "account:office@isp.example:messages/3600s", amount: int = 1, most: int = 3) -> CounterRequest:
    return CounterRequest(key, amount, most, HOUR, f"{most}/h for office@isp.example")


def test_window_arithmetic() -> None:
    r = hourly(most=3)
    width = HOUR / COUNTER_BUCKETS
    assert r.refusal([], T0) is None
    assert r.refusal([(r.bucket(T0), 2)], T0) is None
    full = [(r.bucket(T0), 2), (r.bucket(T0 + 600), 1)]
    refusal = r.refusal(full, T0 + 900)
    assert refusal is not None and refusal.used == 3
    assert refusal.next_slot == T0 + HOUR + width  # the oldest bucket leaves the window (a bucket late: never early)
    assert r.refusal(full, refusal.next_slot) is None
    big = CounterRequest("k", 10, 3, HOUR)  # more than the limit at once: only into an empty window
    assert big.refusal([], T0) is None
    assert big.refusal([(big.bucket(T0), 1)], T0).next_slot == T0 + HOUR + width


@asynccontextmanager
async def sqlite_store(path: Path) -> AsyncIterator[SharedCounters]:
    queue = SqliteQueue(path)
    await queue.open()
    try:
        yield queue
    finally:
        await queue.close()


@asynccontextmanager
async def postgres_store(dsn: str) -> AsyncIterator[SharedCounters]:
    queue = PostgresQueue(dsn, node="test", pool_size=4)
    await queue.open()
    try:
        yield queue
    finally:
        await queue.close()


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Any]:
    """Opens a queue backend on one shared store (each call: another instance, as another process would)."""
    if request.param == "sqlite":
        path = tmp_path / "queue.sqlite3"
        return lambda: sqlite_store(path)
    dsn = request.getfixturevalue("pg_dsn")
    return lambda: postgres_store(dsn)


async def _promises(open_store: Callable[[], Any]) -> None:
    a_key, s_key = "account:office@isp.example:messages/3600s", "sender:alice@corp.example:recipients/86400s"
    async with open_store() as one, open_store() as other:
        assert await one.usage(T0) == []
        assert await one.take([hourly(a_key)], T0) is None
        assert await other.take([hourly(a_key), CounterRequest(s_key, 5, 10, 86400.0, "10 recipients/d")], T0 + 60) \
            is None
        refusal = await one.take([CounterRequest(s_key, 6, 10, 86400.0, "10 recipients/d"), hourly(a_key)], T0 + 120)
        assert refusal is not None and refusal.key == s_key and refusal.used == 5
        assert await other.take([hourly(a_key)], T0 + 180) is None  # the refused take counted nothing
        refusal = await other.take([hourly(a_key)], T0 + 240)
        assert refusal is not None and (refusal.used, refusal.max) == (3, 3)
        assert refusal.label == "3/h for office@isp.example"
        await one.give_back([hourly(a_key)], T0 + 180)  # that one sent nothing after all
        assert await other.take([hourly(a_key)], T0 + 240) is None
    async with open_store() as again:  # a restart keeps the counts
        uses = {u.key: u for u in await again.usage(T0 + 300)}
        assert (uses[a_key].used, uses[a_key].max, uses[a_key].every) == (3, 3, HOUR)
        assert uses[s_key].used == 5
        assert await again.take([hourly(a_key)], T0 + 300) is not None
        assert await again.take([hourly(a_key)], T0 + HOUR + HOUR / COUNTER_BUCKETS) is None  # the window moved on


def test_counter_promises(store: Callable[[], Any]) -> None:
    asyncio.run(_promises(store))


def test_memory_fallback_same_window() -> None:
    async def run() -> None:
        counters = MemoryCounters()
        assert await counters.take([hourly(most=1)], T0) is None
        refusal = await counters.take([hourly(most=1)], T0 + 1)
        assert refusal is not None and refusal.next_slot == T0 + HOUR + HOUR / COUNTER_BUCKETS
        assert [u.used for u in await counters.usage(T0 + 1)] == [1]

    asyncio.run(run())


def test_racing_processes_never_overshoot(store: Callable[[], Any]) -> None:
    """Two instances (workers or nodes) racing for 10 slots: exactly 10 takes fit."""
    async def run() -> None:
        async with store() as one, store() as other:
            takes = [(one if i % 2 else other).take([hourly("race", most=10)], T0 + i * 0.01) for i in range(40)]
            results = await asyncio.gather(*takes)
            assert sum(r is None for r in results) == 10
            assert [u.used for u in await one.usage(T0 + 1)] == [10]

    asyncio.run(run())
