"""The ``sqlite`` queue plugin class and its options (``queue: {sqlite: {...}}``)."""

from __future__ import annotations

from pathlib import Path

from mailpipe.core.plugin import PluginContext
from mailpipe.core.queue import QueueBackend
from mailpipe.core.settings import Duration
from mailpipe.core.workers.slot import current

from ..sql_queue.plugin import QueueOptions, QueuePlugin
from .location import BUSY_TIMEOUT, queue_file
from .shards import open_queue
from .store import SqliteQueue


class SqliteQueueOptions(QueueOptions):
    """Options of the sqlite queue."""

    path: Path | None = None
    busy_timeout: Duration = BUSY_TIMEOUT

    def make_queue(self, context: PluginContext) -> QueueBackend:
        """The queue file: ``path`` relative to the config file's folder, or ``queue.sqlite3`` in the state folder.

        A worker of several (``workers: N``) gets its own file beside it, and worker 1 reads them all
        (``shards.py``); one process with a single file gets the plain ``SqliteQueue``.
        """
        path = queue_file(self.path, context.settings.state_dir, context.base_dir)
        return open_queue(path, current(), lambda file: SqliteQueue(file, busy_timeout=self.busy_timeout,
                                                                    history_days=self.history_days))


class SqliteQueuePlugin(QueuePlugin):
    """Durable queue in one SQLite file (WAL, group commit, indexed due lookup)."""

    name = "sqlite"
    Options = SqliteQueueOptions
