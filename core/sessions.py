"""The SMTP sessions in progress, in (intake) and out (delivery), for the console and metrics.

The intake registers each client connection (``incoming``) and updates its
state as the SMTP dialogue goes on; the scheduler registers each delivery of
one route of one message (``outgoing``). Nothing here touches the network or
the queue: it is a small in-memory table read by observers.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .clock import Clock, SystemClock


@dataclass
class IncomingSession:
    """A client connected to an intake listener."""

    id: int
    peer: str
    listener: str
    since: float
    helo: str | None = None
    state: str = "connected"
    messages: int = 0


@dataclass
class OutgoingSession:
    """A delivery in progress: one route of one message."""

    id: int
    message_id: str
    route: str
    remote: str
    recipients: list[str] = field(default_factory=list)
    since: float = 0.0
    state: str = "delivering"


class Sessions:
    """The table of live sessions of one gateway."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock = clock or SystemClock()
        self._ids = itertools.count(1)
        self._in: dict[Any, IncomingSession] = {}
        self._out: dict[int, OutgoingSession] = {}

    # -- intake ---------------------------------------------------------------------------

    def incoming(self, key: Any, peer: str, listener: str) -> IncomingSession:
        """Register a client connection under ``key`` (the intake's per-connection object)."""
        session = IncomingSession(next(self._ids), peer, listener, self.clock.now())
        self._in[key] = session
        return session

    def update(self, key: Any, **changes: Any) -> None:
        """Change fields (``helo``, ``state``) of a registered client connection; unknown keys are ignored."""
        session = self._in.get(key)
        if session is None:
            return
        for name, value in changes.items():
            setattr(session, name, value)

    def closed(self, key: Any) -> None:
        """The client connection ended."""
        self._in.pop(key, None)

    # -- delivery -------------------------------------------------------------------------

    @contextlib.contextmanager
    def outgoing(self, message_id: str, route: Any) -> Iterator[OutgoingSession]:
        """Register the delivery of ``route`` (a ``Route``) of a message for as long as the block runs."""
        session = OutgoingSession(
            next(self._ids), message_id, f"{route.kind}:{route.destination}", route.destination,
            list(route.recipients), self.clock.now(),
        )
        self._out[session.id] = session
        try:
            yield session
        finally:
            self._out.pop(session.id, None)

    # -- reading --------------------------------------------------------------------------

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        """Copies of every live session: ``{"in": [...], "out": [...]}``, oldest first."""
        return {
            "in": [vars(s).copy() for s in sorted(self._in.values(), key=lambda s: s.id)],
            "out": [vars(s).copy() for s in sorted(self._out.values(), key=lambda s: s.id)],
        }

    def counts(self) -> dict[str, int]:
        """How many sessions are live in each direction."""
        return {"in": len(self._in), "out": len(self._out)}
