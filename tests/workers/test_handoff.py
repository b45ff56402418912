"""The intake's hand-off (``StoreAndClaim``): a new message stored already claimed by its gateway's scheduler.

The queue face keeps the promises of a store and of a claim together: durable once it returned,
nobody else gets the message while the lease holds, a release makes it due again, ``recover``
takes it from an owner that died. Checked on the plain sqlite queue and on a worker's view of the
per-worker files, whose ``record`` and ``release`` must find the message's file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from mailpipe.core.message import RecipientState
from mailpipe.core.queue import QueueBackend, StoreAndClaim
from mailpipe.core.testing.queue import new_message, scenario, update
from mailpipe.core.workers.slot import WorkerSlot
from mailpipe.plugins.sqlite_queue import SqliteQueue
from mailpipe.plugins.sqlite_queue.shards import open_queue

T0 = 4_000_000_000.0
DEAD = "localhost-that-is-not-this-one:1:dead"  # another host's owner: only its lease time counts


def plain(base: Path) -> QueueBackend:
    return SqliteQueue(base)


def worker_two(base: Path) -> QueueBackend:
    return open_queue(base, WorkerSlot(2, 2, 1), lambda path: SqliteQueue(path))


@pytest.mark.parametrize("make", [plain, worker_two], ids=["sqlite", "worker-2-of-2"])
def test_stored_claimed_is_leased_recorded_and_released(tmp_path: Path, make: Callable[[Path], QueueBackend]) -> None:
    @scenario
    async def run() -> None:
        base = tmp_path / "queue.sqlite3"
        queue = make(base)
        assert isinstance(queue, StoreAndClaim)
        await queue.open()
        try:
            message, data = new_message(T0, ["a@dest.test", "b@dest.test"])
            claimed = await queue.store_claimed(message, data, "me", T0 + 300)
            assert claimed.id == message.id and await claimed.body() == data
            assert [r.address for r in claimed.recipients] == ["a@dest.test", "b@dest.test"]
            # Leased to "me": nobody claims it while the lease holds, also "me" (it is in flight).
            assert await queue.claim_due(T0 + 10, 10, "other", T0 + 400) == []
            assert await queue.next_due() == T0 + 300
            # One recipient recorded, the other cut short: the release makes only that one due again.
            await queue.record(claimed, [update(claimed, "a@dest.test", RecipientState.DELIVERED, T0 + 1)], T0 + 1)
            await queue.release(claimed.id, "me")
            again = await queue.claim_due(T0 + 10, 10, "other", T0 + 400)
            assert [(m.id, [r.address for r in m.recipients]) for m in again] == [(message.id, ["b@dest.test"])]
            await queue.record(again[0], [update(again[0], "b@dest.test", RecipientState.DELIVERED, T0 + 11)], T0 + 11)
            await queue.release(again[0].id, "other")
            assert await queue.list() == [] and await queue.next_due() is None
        finally:
            await queue.close()
        # Durable: a new process finds the finished message with its log.
        reopened = make(base)
        await reopened.open()
        try:
            assert [a.recipient for a in await reopened.attempts()] == ["a@dest.test", "b@dest.test"]
        finally:
            await reopened.close()

    run()


def test_a_lease_of_a_dead_owner_is_recovered(tmp_path: Path) -> None:
    @scenario
    async def run() -> None:
        queue = SqliteQueue(tmp_path / "queue.sqlite3")
        await queue.open()
        try:
            message, data = new_message(T0, ["a@dest.test"])
            await queue.store_claimed(message, data, DEAD, 1.0)  # a lease that ran out long ago
            assert await queue.recover("me") == 1
            assert [m.id for m in await queue.claim_due(T0, 10, "me", T0 + 300)] == [message.id]
        finally:
            await queue.close()

    run()
