"""The ``sqlite`` queue plugin: the embedded default queue backend.

``queue: {sqlite: {path: queue.sqlite3}}``; the path is relative to the config
file's folder, and defaults to ``queue.sqlite3`` in the state folder.
"""

from __future__ import annotations

from pathlib import Path

from mailpipe.core.plugin import PluginContext
from mailpipe.core.settings import Duration

from ..sql_queue.plugin import QueueOptions, QueuePlugin
from .store import SqliteQueue


class SqliteQueueOptions(QueueOptions):
    """Options of the sqlite queue."""

    path: Path | None = None
    busy_timeout: Duration = 10.0

    def make_queue(self, context: PluginContext) -> SqliteQueue:
        """The queue file: ``path`` relative to the config file's folder, or ``queue.sqlite3`` in the state folder."""
        path = context.resolve_path(self.path) if self.path else context.settings.state_dir / "queue.sqlite3"
        return SqliteQueue(path, busy_timeout=self.busy_timeout, history_days=self.history_days)


class SqliteQueuePlugin(QueuePlugin):
    """Durable queue in one SQLite file (WAL, group commit, indexed due lookup)."""

    name = "sqlite"
    Options = SqliteQueueOptions


__all__ = ["SqliteQueue", "SqliteQueuePlugin"]
