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

The protocol sets ``AFTER_NEXT_REPLY`` while its DATA hook runs; the gateway reads it when it
hands the message to the scheduler. A context variable, because the hook runs in the session's
own task and nothing between the two knows about sessions.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar

Start = Callable[[], None]
AFTER_NEXT_REPLY: ContextVar[Callable[[Start], None] | None] = ContextVar("mailpipe_after_next_reply", default=None)
"""Set by ``GatewaySMTP.smtp_DATA`` for a session's first message: call it with a function, and the
session calls that function right after its next reply (or as it ends)."""
