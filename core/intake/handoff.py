"""When a handed-off message's attempt starts: after its client has had its next reply.

A message stored claimed by the scheduler (the hand-off, ``core/scheduler.py``) is delivered by
the worker that took it, at once. Its client meanwhile reads the ``250`` and sends its next
command, which then waits behind the attempt's first steps on the same event loop. With a
client that keeps its connection the next command is the next ``MAIL`` and that wait is short
work done anyway; with a client that opens a connection per message (most scripts and many
internal servers) it is ``QUIT``, answered ~0.15 ms later for every message (measured,
docs/workers.md). So for the **first message of a session** the protocol asks that the
attempt start right after the session's next reply (or when the connection ends); later
messages of a session start at once, as before. The scheduler starts it anyway after
``Scheduler``'s ``START_WITHIN`` (a client that keeps an idle connection open).

When that next reply ends the session (``221`` to ``QUIT``, or the connection is gone) and the
client was the worker's only one, the attempt waits a little longer, for the worker to be quiet
(``QuietStarts``): such a client connects again at once for its next message, and when the
kernel gives that connection to the same worker, its greeting and commands would wait behind
the attempt's steps, while the other worker sits idle. So the attempt starts once the worker
has had no client for ``GRACE`` seconds — the client then went to another worker, or is done —
or at once when a second client connects (the worker is no longer serving one client alone).

The protocol sets ``AFTER_NEXT_REPLY`` while its DATA hook runs; the gateway reads it when it
hands the message to the scheduler. A context variable, because the hook runs in the session's
own task and nothing between the two knows about sessions.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextvars import ContextVar

log = logging.getLogger("mailpipe.intake")

Start = Callable[[], None]
AFTER_NEXT_REPLY: ContextVar[Callable[[Start], None] | None] = ContextVar("mailpipe_after_next_reply", default=None)
"""Set by ``GatewaySMTP.smtp_DATA`` for a session's first message: call it with a function, and the
session calls that function right after its next reply (or as it ends)."""

GRACE = 0.0005
"""Seconds a worker left without clients waits to see whether the client that just left connects to it
again, before it starts that client's attempts: a client sending one message per connection is back
within a round trip or two (on loopback ~0.1 ms; a LAN's round trip is 0.1-0.5 ms)."""

MAX_WAITING = 8
"""Attempts at most that wait for a worker to be quiet: the client of one-message sessions reaches the same
worker several times in a row now and then (two workers: nine in a row, one chance in 256)."""


def run_starts(starts: list[Start]) -> None:
    """Start each waiting attempt; one that fails to start is logged and the others still start."""
    for start in starts:
        try:
            start()
        except Exception:  # the scheduler's business; the session goes on
            log.exception("starting a handed-off delivery failed")


class QuietStarts:
    """The attempts of sessions that ended alone, started when the worker's intake is quiet.

    Owned by ``ConnectionSlots``, which counts the worker's client connections (``active``) and
    calls ``opened`` and ``closed`` as they come and go. ``GatewaySMTP`` hands over (``add``) the
    attempts waiting for its session's next reply when that reply ends the session and the session
    was the worker's only one. They start ``GRACE`` seconds after the worker has no client left,
    unless a client is connected by then (they wait for it to go); at once when a second client
    connects, or when ``MAX_WAITING`` wait already. The scheduler's ``START_WITHIN`` bounds the
    wait in every case.
    """

    def __init__(self, active: Callable[[], int]) -> None:
        self._active = active
        self._starts: list[Start] = []
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        """Attempts waiting for the worker to be quiet."""
        return len(self._starts)

    def add(self, starts: list[Start]) -> None:
        """A session that was alone ended with ``starts`` waiting: start them when the worker is quiet.

        When ``MAX_WAITING`` are waiting already (the client kept coming back to this worker, e.g.
        while the other worker restarts), those start now: the list stays short and no attempt
        waits for the scheduler's ``START_WITHIN``, holding a delivery slot that long.
        """
        if len(self._starts) >= MAX_WAITING:
            self._start_all()
        self._starts.extend(starts)
        self._arm()

    def opened(self) -> None:
        """A client connected: with two or more the worker is not serving one client alone; start now."""
        if self._starts and self._active() > 1:
            self._start_all()

    def closed(self) -> None:
        """A client's connection ended: with none left, start after ``GRACE`` unless one comes back."""
        self._arm()

    def _arm(self) -> None:
        if self._starts and self._timer is None and self._active() == 0:
            self._timer = asyncio.get_running_loop().call_later(GRACE, self._grace_over)

    def _grace_over(self) -> None:
        self._timer = None
        if self._active() == 0:  # else a client came back: wait until it goes (closed) or another comes
            self._start_all()

    def _start_all(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        starts, self._starts = self._starts, []
        run_starts(starts)
