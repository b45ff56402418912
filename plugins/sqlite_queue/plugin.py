"""The ``sqlite`` queue plugin class and its options (``queue: {sqlite: {...}}``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from mailpipe.core.hookspecs import hookimpl
from mailpipe.core.plugin import Plugin, PluginContext
from mailpipe.core.settings import Duration, Strict

from .location import BUSY_TIMEOUT, HISTORY_DAYS, queue_file
from .store import SqliteQueue


class SqliteQueueOptions(Strict):
    """Options of the sqlite queue."""

    path: Path | None = None
    busy_timeout: Duration = BUSY_TIMEOUT
    history_days: float = Field(HISTORY_DAYS, gt=0, description="keep the message log, the event log and finished "
                                "messages this many days; older entries are pruned hourly")


class SqliteQueuePlugin(Plugin):
    """Durable queue in one SQLite file (WAL, group commit, indexed due lookup)."""

    name = "sqlite"
    Options = SqliteQueueOptions

    @hookimpl
    def open_queue(self, context: PluginContext) -> SqliteQueue:
        """Called once by the gateway at start: the queue backend for ``queue: {sqlite: ...}``."""
        opts: SqliteQueueOptions = self.options  # type: ignore[assignment]
        path = queue_file(opts.path, context.settings.state_dir, context.base_dir)
        return SqliteQueue(path, busy_timeout=opts.busy_timeout, history_days=opts.history_days)
