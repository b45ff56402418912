"""The ``sqlite`` queue plugin class and its options (``queue: {sqlite: {...}}``)."""

from __future__ import annotations

from pathlib import Path

from mailpipe.core.plugin import PluginContext
from mailpipe.core.settings import Duration

from ..sql_queue.plugin import QueueOptions, QueuePlugin
from .location import BUSY_TIMEOUT, queue_file
from .store import SqliteQueue


class SqliteQueueOptions(QueueOptions):
    """Options of the sqlite queue."""

    path: Path | None = None
    busy_timeout: Duration = BUSY_TIMEOUT

    def make_queue(self, context: PluginContext) -> SqliteQueue:
        """The queue file: ``path`` relative to the config file's folder, or ``queue.sqlite3`` in the state folder."""
        path = queue_file(self.path, context.settings.state_dir, context.base_dir)
        return SqliteQueue(path, busy_timeout=self.busy_timeout, history_days=self.history_days)


class SqliteQueuePlugin(QueuePlugin):
    """Durable queue in one SQLite file (WAL, group commit, indexed due lookup)."""

    name = "sqlite"
    Options = SqliteQueueOptions
