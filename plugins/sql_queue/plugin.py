"""The queue plugin both SQL backends are: options that make a backend, one ``open_queue`` hook."""

from __future__ import annotations

from pydantic import Field

from mailpipe.core.hookspecs import hookimpl
from mailpipe.core.plugin import Plugin, PluginContext
from mailpipe.core.queue import QueueBackend
from mailpipe.core.settings import Strict


class QueueOptions(Strict):
    """Options every SQL queue takes (``history_days``); a backend's options add theirs and ``make_queue``."""

    history_days: float = Field(30.0, gt=0, description="keep the message log, the event log and finished "
                                "messages this many days; older entries are pruned hourly (by one node of a "
                                "shared queue)")

    def make_queue(self, context: PluginContext) -> QueueBackend:
        """The backend these options describe, not yet open (``open_queue``)."""
        raise NotImplementedError


class QueuePlugin(Plugin):
    """Base of the SQL queue plugins: ``Options`` (a ``QueueOptions``) make the backend."""

    @hookimpl
    def open_queue(self, context: PluginContext) -> QueueBackend:
        """Called once by the gateway (and by queue commands) at start: the backend for ``queue: {<name>: ...}``."""
        options: QueueOptions = self.options  # type: ignore[assignment]
        return options.make_queue(context)
