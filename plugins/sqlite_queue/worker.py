"""One thread that owns the SQLite connection and commits writes in groups.

Every write job that is waiting when the thread finishes a commit goes into
the next transaction, so many messages that finished DATA at about the same
time share one fsync (group commit). Each job of a group runs in its own savepoint:
one failing job does not undo the others (a group of one job, the common case with
one client sending, needs none: two statements less per commit). Results go back to
the asyncio loop of the caller.

Writes nobody waits for (events: ``submit_nowait``) do not make a transaction of
their own: they ride along with the next group (a message stored, an attempt
recorded), and are committed by themselves only when no group came for
``BACKGROUND_DELAY`` seconds, or before a read that may want to see them (every
read but the delivery path's own: ``hot``). A message delivered thus costs one
commit, not two.

Writes whose caller can wait a moment (``patient``: an attempt's record, which no SMTP
client waits for) give the next urgent write (a message being stored, whose client waits
for its ``250``) up to ``PATIENCE`` seconds to join their group. With one client sending,
the record of one message and the store of the next thus share a commit, and the store
never queues behind a commit of records that started just before it. They wait only while
clients are sending (an urgent write came in the last ``RECENT`` seconds): when the queue is
drained after a burst or an outage nothing will join, and waiting would only slow the drain.

The thread is a *batch* thread (Linux ``SCHED_BATCH``, see ``as_batch_thread``): its wake-ups
do not preempt the event loop in the middle of its work; it runs when the loop waits for
input or its time slice ends, and by then more jobs have come to share its commit.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("mailpipe.queue.sqlite")

Job = Callable[[sqlite3.Connection], Any]
MAX_GROUP = 512
BACKGROUND_DELAY = 0.05
"""Seconds a write nobody waits for (an event) may wait for a group to ride along with."""
PATIENCE = 0.003
"""Seconds a patient write (an attempt's record) may wait for an urgent one to share its commit."""
RECENT = 0.03
"""A patient write waits only when a durable urgent write (a message stored) came less than this long ago."""


def as_batch_thread() -> bool:
    """Called by the writer thread as it starts: make the calling thread ``SCHED_BATCH``; whether it is.

    A thread woken by a job (a normal thread) preempts the event loop at once when they share a
    core (a pinned worker, or a machine busy with other work): the loop is cut off in the middle of
    reading a client's command, twice per message, and both lose their caches. A batch thread is
    never preferred at wake-up; the loop keeps its slice, the commit it is about to wait for comes
    when it yields (the loop waits for input far more often than a slice lasts), and the writer
    finds more jobs to group when it runs. Measured with 20 clients, a new connection per message,
    two pinned workers sharing the machine with the clients and the sink (bench/run.py): intake
    1,860 -> 2,220-2,430 msgs/s, end to end 1,290-1,360 -> 1,500-1,620; one client unchanged
    (its loop waits for each commit: the core is idle and the writer runs at once). Where the
    platform has no such policy (or refuses it) the thread stays a normal one.
    """
    setter = getattr(os, "sched_setscheduler", None)
    policy = getattr(os, "SCHED_BATCH", None)
    if setter is None or policy is None:
        return False
    try:
        setter(0, policy, os.sched_param(0))  # pid 0: the calling thread
    except OSError as exc:
        log.debug("the SQLite writer thread stays a normal thread: %s", exc)
        return False
    return True


@dataclass
class _Work:
    fn: Job
    write: bool
    future: asyncio.Future[Any] | None
    loop: asyncio.AbstractEventLoop | None
    durable: bool = True
    hot: bool = False  # a read of the delivery path: it need not see the background writes
    patient: bool = False  # a write that may wait up to PATIENCE for an urgent one to join its group


_STOP = object()


class DbWorker:
    """Runs jobs ``fn(conn)`` on a private connection in a dedicated thread."""

    def __init__(self, connect: Callable[[], sqlite3.Connection]) -> None:
        self._connect = connect
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="mailpipe-sqlite", daemon=True)
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._synchronous_full = True  # the connection is opened with synchronous=FULL

    def start(self) -> None:
        self._thread.start()
        self._ready.wait()
        if self._start_error is not None:
            raise self._start_error

    def stop(self) -> None:
        if self._thread.is_alive():
            self._jobs.put(_STOP)
            self._thread.join()

    def submit(self, fn: Job, *, write: bool, durable: bool = True, hot: bool = False,
               patient: bool = False) -> asyncio.Future[Any]:
        """Queue a job; the returned future resolves in the caller's loop.

        A ``durable`` write is on stable storage when the future resolves (its
        group is committed with ``synchronous=FULL``: one fsync for the group).
        A non-durable write survives a crash of the process but maybe not a power
        loss; it is for bookkeeping that start-up recovery rebuilds anyway
        (leases, events). A group with any durable job is committed durably.
        A ``hot`` read (the delivery path's: due times, bodies) does not wait for
        the background writes to be committed first. A ``patient`` write may wait up
        to ``PATIENCE`` for an urgent write to share its commit (see the module's text).
        """
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._jobs.put(_Work(fn, write, fut, loop, durable, hot, patient))
        return fut

    def submit_nowait(self, fn: Job) -> None:
        """Queue a non-durable write whose result nobody waits for (events): it rides along with the next
        group (see the module's text); errors are logged."""
        self._jobs.put(_Work(fn, True, None, None, False))

    def _run(self) -> None:
        as_batch_thread()
        try:
            conn = self._connect()
        except BaseException as exc:  # reported to start()
            self._start_error = exc
            self._ready.set()
            return
        self._ready.set()
        background: list[_Work] = []  # writes nobody waits for, waiting for a group to ride along with
        due = 0.0  # when the background writes are committed by themselves
        last_urgent = float("-inf")  # when the last urgent write came (patience is for when more may come)
        try:
            while True:
                wait = due - time.monotonic() if background else None
                try:
                    if wait is not None and wait <= 0:
                        raise queue.Empty
                    item = self._jobs.get(timeout=wait)
                except queue.Empty:
                    self._commit_group(conn, background)
                    background = []
                    continue
                if item is _STOP:
                    if background:
                        self._commit_group(conn, background)
                    return
                if not item.write:
                    if background and not item.hot:
                        self._commit_group(conn, background)
                        background = []
                    self._finish(item, *self._attempt(conn, item))
                    continue
                if item.future is None:
                    if not background:
                        due = time.monotonic() + BACKGROUND_DELAY
                    background.append(item)
                    continue
                group, deferred_reads, stop = [item], [], False
                now = time.monotonic()
                if item.patient and now - last_urgent < RECENT:
                    patient_until: float | None = now + PATIENCE
                else:
                    patient_until = None
                    if item.durable and not item.patient:  # a message stored (not a claim or a lease)
                        last_urgent = now
                while len(group) < MAX_GROUP:
                    try:
                        if patient_until is None:
                            more = self._jobs.get_nowait()
                        else:  # only patient writes so far: give an urgent one a moment to join
                            more = self._jobs.get(timeout=max(0.0, patient_until - time.monotonic()))
                    except queue.Empty:
                        break
                    if more is _STOP:
                        stop = True
                        break
                    (group if more.write else deferred_reads).append(more)
                    if more.write and more.durable and not more.patient and more.future is not None:
                        last_urgent = time.monotonic()
                    if not more.write or not (more.patient or more.future is None):
                        patient_until = None  # an urgent write or a read: commit now (events ride along)
                self._commit_group(conn, [*background, *group])
                background = []
                for read in deferred_reads:
                    self._finish(read, *self._attempt(conn, read))
                if stop:
                    return
        finally:
            conn.close()

    @staticmethod
    def _attempt(conn: sqlite3.Connection, work: _Work) -> tuple[Any, BaseException | None]:
        try:
            return work.fn(conn), None
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting coroutine
            return None, exc

    def _commit_group(self, conn: sqlite3.Connection, group: list[_Work]) -> None:
        outcomes: list[tuple[Any, BaseException | None]] = []
        durable = any(work.durable for work in group)
        try:
            if durable != self._synchronous_full:
                conn.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
                self._synchronous_full = durable
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            for work in group:
                self._finish(work, None, exc)
            return
        if len(group) == 1:
            self._commit_one(conn, group[0])
            return
        for work in group:
            conn.execute("SAVEPOINT job")
            result, error = self._attempt(conn, work)
            if error is None:
                conn.execute("RELEASE job")
            else:
                try:
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                except sqlite3.Error:
                    pass
            outcomes.append((result, error))
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            outcomes = [(None, exc)] * len(group)
        for work, (result, error) in zip(group, outcomes, strict=True):
            self._finish(work, result, error)

    def _commit_one(self, conn: sqlite3.Connection, work: _Work) -> None:
        """A group of one job needs no savepoint: a failing job is rolled back with its transaction."""
        result, error = self._attempt(conn, work)
        try:
            conn.execute("COMMIT" if error is None else "ROLLBACK")
        except sqlite3.Error as exc:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            result, error = None, exc if error is None else error
        self._finish(work, result, error)

    @staticmethod
    def _finish(work: _Work, result: Any, error: BaseException | None) -> None:
        if work.future is None or work.loop is None:
            if error is not None:
                log.error("queue write failed: %s", error)
            return

        def settle(fut: asyncio.Future[Any] = work.future) -> None:
            if fut.done():
                return
            if error is not None:
                fut.set_exception(error)
            else:
                fut.set_result(result)

        try:
            work.loop.call_soon_threadsafe(settle)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass
