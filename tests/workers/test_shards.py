"""The sqlite queue with one file per worker (plugins/sqlite_queue/shards.py), in one process.

Each worker's view keeps its promises (the conformance suite runs against worker 1's view, which
reads every file, and worker 2's, which has only its own); the administration view sees every file;
a worker delivers only from its own file (and those of workers that no longer run); chores run in
worker 1; the key-value face is shared through worker 1's file; ``pipeline queue migrate`` exports
every file.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mailpipe.core.events import Event
from mailpipe.core.message import RecipientState
from mailpipe.core.queue import QueueBackend
from mailpipe.core.testing.queue import QueueConformance, QueueFactory, new_message, scenario, update
from mailpipe.core.workers.slot import WorkerSlot
from mailpipe.plugins.sqlite_queue import SqliteQueue
from mailpipe.plugins.sqlite_queue.shards import ShardedQueue, existing_shards, open_queue, shard_path

HISTORY_DAYS = 7.0
T0 = 4_000_000_000.0


def view(base: Path, index: int = 1, count: int = 1) -> QueueBackend:
    """The queue as worker ``index`` of ``count`` opens it (1 of 1: the administration commands)."""
    return open_queue(base, WorkerSlot(index, count, 1 if count > 1 else None),
                      lambda path: SqliteQueue(path, history_days=HISTORY_DAYS))


class WorkerView(QueueConformance):
    """The conformance suite on the queue as worker ``index`` of ``count`` sees it."""

    retention = HISTORY_DAYS * 86400.0
    shares_store = True
    index, count = 1, 2

    @pytest.fixture
    def make_queue(self, tmp_path: Path) -> QueueFactory:
        return lambda: view(tmp_path / "queue.sqlite3", self.index, self.count)

    @pytest.fixture
    def make_full_queue(self, small_disk: Path) -> QueueFactory:
        return lambda: view(small_disk / "queue.sqlite3", self.index, self.count)


class TestWorkerOneView(WorkerView):
    """Worker 1 of 2: stores in its own file, reads both."""


class TestWorkerTwoView(WorkerView):
    """Worker 2 of 2: its own file only."""

    index = 2


def test_file_names() -> None:
    base = Path("/var/lib/mailpipe/queue.sqlite3")
    assert shard_path(base, 1) == base
    assert shard_path(base, 2) == Path("/var/lib/mailpipe/queue-2.sqlite3")
    assert shard_path(Path("/q/mail"), 3) == Path("/q/mail-3")


@scenario
async def test_workers_keep_their_own_mail_and_the_admin_view_sees_all(tmp_path: Path) -> None:
    base = tmp_path / "queue.sqlite3"
    one, two = view(base, 1, 2), view(base, 2, 2)
    assert isinstance(one, ShardedQueue) and isinstance(two, ShardedQueue)
    await one.open()
    await two.open()
    try:
        first, first_data = new_message(T0, ["a@dest.test"])
        second, second_data = new_message(T0 + 1, ["b@dest.test"])
        await one.store(first, first_data)
        await two.store(second, second_data)
        assert set(existing_shards(base)) == {1, 2}

        # Each worker claims only the mail of its own file.
        assert [m.id for m in await two.claim_due(T0 + 10, 10, "two", T0 + 100)] == [second.id]
        assert [m.id for m in await one.claim_due(T0 + 10, 10, "one", T0 + 100)] == [first.id]

        admin = view(base)
        assert isinstance(admin, ShardedQueue)
        await admin.open()
        try:
            assert [m.id for m in await admin.list()] == [first.id, second.id]
            detail = await admin.get(second.id)
            assert detail is not None and await detail.message.body() == second_data
            assert (await admin.stats(since=0, now=T0 + 20)).queue_depth == 2

            # Worker 2 records its message: finished in its own file; the admin view sees one left.
            await two.record(second, [update(second, "b@dest.test", RecipientState.DELIVERED, T0 + 11)], T0 + 11)
            await two.release(second.id, "two")
            await one.release(first.id, "one")
            st = await admin.stats(since=0, now=T0 + 20)
            assert st.queue_depth == 1 and st.outcomes == {"delivered": 1} and st.received == 2
            assert [a.message_id for a in await admin.attempts()] == [second.id]

            # Changes reach every file.
            assert await admin.hold(None) == 1
            assert await admin.release_hold(None, T0 + 30) == 1
            assert await admin.delete([first.id]) == 1 and await admin.list() == []

            # Events of both workers, merged by time; chores run once, in worker 1.
            one.add_event(Event(T0 + 2, "gateway.started", "one", data={"worker": 1}))
            two.add_event(Event(T0 + 1, "gateway.started", "two", data={"worker": 2}))
            await one.events()  # a read that may want them commits the buffered events first
            await two.events()
            assert [e.text for e in await admin.events(kind="gateway")] == ["two", "one"]
            assert await one.run_once("prune", T0, 3600) and not await two.run_once("prune", T0, 3600)
            removed = await one.prune(T0 + 30 * 86400)
            assert removed["events"] == 2 and removed["attempts"] == 1

            # The key-value face is worker 1's file, whichever worker writes.
            await two.kv_put("direct", "policy", "v1")
            assert await one.kv_get("direct", "policy") == "v1"
        finally:
            await admin.close()
    finally:
        await one.close()
        await two.close()


@scenario
async def test_a_worker_adopts_the_files_of_workers_that_no_longer_run(tmp_path: Path) -> None:
    """workers lowered from 3 to 1: the one worker delivers what was left in files 2 and 3."""
    base = tmp_path / "queue.sqlite3"
    left = []
    for index in (1, 2, 3):
        worker = view(base, index, 3)
        await worker.open()
        message, data = new_message(T0 + index, ["left@dest.test"])
        await worker.store(message, data)
        left.append(message)
        await worker.close()
    alone = view(base, 1, 1)
    assert isinstance(alone, ShardedQueue) and alone.delivering == [1, 2, 3]
    await alone.open()
    try:
        claimed = await alone.claim_due(T0 + 10, 10, "alone", T0 + 100)
        assert sorted(m.id for m in claimed) == sorted(m.id for m in left)
        for message in claimed:
            await alone.record(message, [update(message, "left@dest.test", RecipientState.DELIVERED, T0 + 11)],
                               T0 + 11)
            await alone.release(message.id, "alone")
        assert await alone.list() == [] and await alone.next_due() is None
    finally:
        await alone.close()
    # With two workers, worker 1 adopts file 3 ((3 - 1) % 2 == 0) and worker 2 none.
    one, two = view(base, 1, 2), view(base, 2, 2)
    assert isinstance(one, ShardedQueue) and isinstance(two, ShardedQueue)
    assert one.delivering == [1, 3] and two.delivering == [2]


@scenario
async def test_migrate_exports_every_file(tmp_path: Path) -> None:
    base = tmp_path / "queue.sqlite3"
    stored = []
    for index in (1, 2):
        worker = view(base, index, 2)
        await worker.open()
        for n in range(3):
            message, data = new_message(T0 + n, ["move@dest.test"])
            await worker.store(message, data)
            worker.add_event(Event(T0 + n, "test.event", f"{index}-{n}"))
            stored.append(message.id)
        await worker.close()
    admin = view(base)
    assert isinstance(admin, ShardedQueue)
    await admin.open()
    try:
        records = [r async for r in admin.export_messages(T0)]
        assert sorted(r.id for r in records) == sorted(stored) and all(r.body for r in records)
        texts = [e.text async for e in admin.export_events() if e.kind == "test.event"]
        assert sorted(texts) == sorted(f"{i}-{n}" for i in (1, 2) for n in range(3))
        counts = await admin.transfer_counts()
        assert counts.messages == 6 and counts.bodies == 6
    finally:
        await admin.close()
