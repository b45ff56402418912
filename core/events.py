"""Gateway events: one record per state change or incident, for the event log.

``Events.emit`` logs the event, hands it to the store (the queue's event log, so
``pipeline events`` can show it later) and to the observers (every plugin's ``event``
hook: metrics, alerts). The gateway connects both with ``attach`` once the queue is
open; until then events are only logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .clock import Clock, SystemClock

log = logging.getLogger("mailpipe.events")
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


@dataclass(frozen=True)
class Event:
    """Something that happened in the gateway.

    ``kind`` is a stable dotted word (``gateway.started``, ``smarthost.login_failed``,
    ``message.delivered``); ``text`` is for people; ``data`` holds printable
    details and never secrets.
    """

    time: float
    kind: str
    text: str
    level: str = "info"
    data: dict[str, Any] = field(default_factory=dict)
    node: str = ""  # the gateway (its ``hostname``) where it happened; several nodes may share a queue


EventSink = Callable[[Event], None]
"""Takes an event; must be quick and must not raise (a store buffers, an observer schedules)."""


class Events:
    """The event emitter shared by the core and the plugins."""

    def __init__(self, clock: Clock | None = None, node: str = "") -> None:
        self.clock = clock or SystemClock()
        self.node = node
        self._store: EventSink | None = None
        self._observe: EventSink | None = None

    def attach(self, *, store: EventSink | None = None, observe: EventSink | None = None) -> None:
        """Where events go besides the log: ``store`` keeps them, ``observe`` tells the plugins."""
        self._store = store
        self._observe = observe

    def emit(self, kind: str, text: str, *, level: str = "info", store: bool = True, **data: Any) -> Event:
        """Log an event, keep it in the event log (unless ``store`` is false) and tell observers."""
        event = Event(self.clock.now(), kind, text, level, data, self.node)
        log.log(_LEVELS.get(level, logging.INFO), "%s: %s", kind, text, extra={"event": kind, "fields": data})
        if store and self._store is not None:
            self._store(event)
        if self._observe is not None:
            self._observe(event)
        return event
