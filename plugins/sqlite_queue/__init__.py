"""The ``sqlite`` queue plugin: the embedded default queue backend.

``queue: {sqlite: {path: queue.sqlite3}}``; the path is relative to the config
file's folder, and defaults to ``queue.sqlite3`` in the state folder.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from mailpipe.core.hookspecs import hookimpl
from mailpipe.core.plugin import Plugin, PluginContext
from mailpipe.core.settings import Duration, Strict

from .store import SqliteQueue


class SqliteQueueOptions(Strict):
    """Options of the sqlite queue."""

    path: Path | None = None
    busy_timeout: Duration = 10.0
    history_days: float = Field(30.0, gt=0, description="keep the message log, the event log and finished "
                                "messages this many days; older entries are pruned hourly")


class SqliteQueuePlugin(Plugin):
    """Durable queue in one SQLite file (WAL, group commit, indexed due lookup)."""

    name = "sqlite"
    Options = SqliteQueueOptions

    @hookimpl
    def open_queue(self, context: PluginContext) -> SqliteQueue:
        """Called once by the gateway at start: the queue backend for ``queue: {sqlite: ...}``."""
        opts: SqliteQueueOptions = self.options  # type: ignore[assignment]
        path = context.resolve_path(opts.path) if opts.path else context.settings.state_dir / "queue.sqlite3"
        return SqliteQueue(path, busy_timeout=opts.busy_timeout, history_days=opts.history_days)


__all__ = ["SqliteQueue", "SqliteQueuePlugin"]
