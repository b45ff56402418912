"""The SQLite queue's writer thread (plugins/sqlite_queue/worker.py): groups, lone jobs, patient writes.

A failing job never undoes another job's write, whether it ran alone (no savepoint: its own
transaction is rolled back) or in a group (its savepoint is); a patient write (an attempt's
record) shares its commit with an urgent one that comes within ``PATIENCE`` while messages are
being stored, and is committed by itself when none comes; when none was stored lately it does
not wait at all.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from mailpipe.plugins.sqlite_queue import worker as worker_module
from mailpipe.plugins.sqlite_queue.worker import PATIENCE, DbWorker


def open_worker(path: Path) -> DbWorker:
    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE IF NOT EXISTS t (v TEXT PRIMARY KEY)")
        return conn

    worker = DbWorker(connect)
    worker.start()
    return worker


def rows(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [v for (v,) in conn.execute("SELECT v FROM t ORDER BY v")]


def insert(value: str):
    return lambda conn: conn.execute("INSERT INTO t (v) VALUES (?)", (value,)).rowcount


def insert_then_fail(value: str):
    def job(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t (v) VALUES (?)", (value,))
        raise RuntimeError("the job failed after its first statement")
    return job


def test_a_lone_failing_job_leaves_nothing_and_the_next_one_works(tmp_path):
    path = tmp_path / "q.sqlite3"
    worker = open_worker(path)
    try:
        async def scenario():
            with pytest.raises(RuntimeError):
                await worker.submit(insert_then_fail("bad"), write=True)
            return await worker.submit(insert("good"), write=True)

        assert asyncio.run(scenario()) == 1
    finally:
        worker.stop()
    assert rows(path) == ["good"]


def test_a_failing_job_in_a_group_undoes_only_its_own_writes(tmp_path):
    path = tmp_path / "q.sqlite3"
    worker = open_worker(path)
    try:
        async def scenario():
            futures = [worker.submit(insert("a"), write=True), worker.submit(insert_then_fail("bad"), write=True),
                       worker.submit(insert("b"), write=True)]
            return await asyncio.gather(*futures, return_exceptions=True)

        a, bad, b = asyncio.run(scenario())
    finally:
        worker.stop()
    assert (a, b) == (1, 1) and isinstance(bad, RuntimeError)
    assert rows(path) == ["a", "b"]


def test_a_patient_write_is_committed_alone_when_nothing_comes(tmp_path):
    path = tmp_path / "q.sqlite3"
    worker = open_worker(path)
    try:
        async def scenario():
            started = time.monotonic()
            result = await worker.submit(insert("record"), write=True, patient=True)
            return result, time.monotonic() - started

        result, took = asyncio.run(scenario())
    finally:
        worker.stop()
    assert result == 1 and rows(path) == ["record"]
    assert took < PATIENCE + 5.0  # waited at most its patience (bounded generously for a busy machine)


def test_a_patient_write_shares_the_commit_of_an_urgent_one(tmp_path, monkeypatch):
    """Clients are sending (a message was just stored): the next urgent write arrives while the patient one
    waits, and both are answered after one commit."""
    monkeypatch.setattr(worker_module, "PATIENCE", 5.0)  # however slow the machine, the urgent one is in time
    monkeypatch.setattr(worker_module, "RECENT", 60.0)
    path = tmp_path / "q.sqlite3"
    worker = open_worker(path)
    commits: list[str] = []
    try:
        async def scenario():
            def traced(conn: sqlite3.Connection) -> int:
                conn.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
                return insert("record")(conn)

            await worker.submit(insert("earlier"), write=True)  # a message stored: clients are sending
            started = time.monotonic()
            patient = worker.submit(traced, write=True, patient=True)
            urgent = worker.submit(insert("stored"), write=True)
            results = await asyncio.gather(patient, urgent)
            return results, time.monotonic() - started

        results, took = asyncio.run(scenario())
        assert results == [1, 1] and took < 4.0  # the urgent write ended the wait
    finally:
        worker.stop()
    assert rows(path) == ["earlier", "record", "stored"] and commits == ["COMMIT"]


@pytest.mark.parametrize("before", ["a message stored", "a lease taken", "nothing"])
def test_a_patient_write_waits_only_while_messages_are_being_stored(tmp_path, monkeypatch, before):
    """A message stored just before: the patient write waits its patience for the next one. Only a lease (a
    claim: not a message stored) or nothing at all (a queue drained after a burst or an outage): it is
    committed at once, nothing will join it."""
    monkeypatch.setattr(worker_module, "PATIENCE", 3.0)
    monkeypatch.setattr(worker_module, "RECENT", 60.0)
    path = tmp_path / "q.sqlite3"
    worker = open_worker(path)
    try:
        async def scenario():
            if before == "a message stored":
                await worker.submit(insert("before"), write=True)
            elif before == "a lease taken":
                await worker.submit(insert("before"), write=True, durable=False)
            started = time.monotonic()
            await worker.submit(insert("record"), write=True, patient=True)
            return time.monotonic() - started

        took = asyncio.run(scenario())
    finally:
        worker.stop()
    assert "record" in rows(path)
    if before == "a message stored":
        assert took >= 3.0
    else:
        assert took < 2.0


async def store(worker: DbWorker, value: str) -> int:
    return await worker.submit(insert(value), write=True)


def test_the_writer_thread_is_a_batch_thread_and_its_jobs_still_run(tmp_path):
    """Linux: the writer thread runs SCHED_BATCH (its wake-ups do not preempt the event loop it serves);
    it still takes every job, and the loop's own thread keeps its normal policy."""
    import os

    if not hasattr(os, "SCHED_BATCH"):
        pytest.skip("no SCHED_BATCH on this platform")
    path = tmp_path / "q.sqlite3"
    worker = open_worker(path)
    try:
        policy = os.sched_getscheduler(worker._thread.native_id)
        assert policy == os.SCHED_BATCH
        assert os.sched_getscheduler(0) == os.SCHED_OTHER
        assert asyncio.run(store(worker, "after")) == 1
        assert rows(path) == ["after"]
    finally:
        worker.stop()


def test_a_refused_batch_policy_leaves_a_normal_thread_that_works(tmp_path, monkeypatch):
    """A platform or sandbox that refuses the policy: one debug line, the thread stays normal and works."""
    import os

    def refuse(*_args):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "sched_setscheduler", refuse, raising=False)
    path = tmp_path / "q.sqlite3"
    worker = open_worker(path)
    try:
        assert worker_module.as_batch_thread() is False
        assert asyncio.run(store(worker, "plain")) == 1
        assert rows(path) == ["plain"]
    finally:
        worker.stop()
