"""Gateway events: one record per state change or incident, for the event log.

``Events.emit`` logs the event, stores it through the queue backend (so
``pipeline events`` can show it later) and hands it to every plugin's
``event`` hook (metrics, alerts).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .clock import Clock, SystemClock

if TYPE_CHECKING:
    from .chain import Chain
    from .queue import QueueBackend

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


class Events:
    """The event emitter shared by the core and the plugins."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock = clock or SystemClock()
        self.queue: QueueBackend | None = None
        self.chain: Chain | None = None

    def emit(self, kind: str, text: str, *, level: str = "info", store: bool = True, **data: Any) -> Event:
        """Log an event, keep it in the event log (unless ``store`` is false) and tell observers."""
        event = Event(self.clock.now(), kind, text, level, data)
        log.log(_LEVELS.get(level, logging.INFO), "%s: %s", kind, text)
        if store and self.queue is not None:
            self.queue.add_event(event)
        if self.chain is not None:
            self.chain.notify("event", event=event)
        return event
