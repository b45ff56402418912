"""The ``sqlite`` queue plugin: the embedded default queue backend.

``queue: {sqlite: {path: queue.sqlite3}}``; the path is relative to the config
file's folder, and defaults to ``queue.sqlite3`` in the state folder.

This package module stays light (no pydantic): the plugin class (``plugin.py``) and the
backend (``store.py``) are imported when first asked for, so the administration commands
can open the queue through ``open_queue_for_admin`` quickly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .location import open_queue_for_admin

if TYPE_CHECKING:
    from .plugin import SqliteQueueOptions, SqliteQueuePlugin
    from .store import SqliteQueue

__all__ = ["SqliteQueue", "SqliteQueueOptions", "SqliteQueuePlugin", "open_queue_for_admin"]


def __getattr__(name: str) -> Any:
    """``SqliteQueuePlugin`` (the entry point), ``SqliteQueueOptions`` and ``SqliteQueue``, imported on first use."""
    if name in ("SqliteQueuePlugin", "SqliteQueueOptions"):
        from . import plugin

        return getattr(plugin, name)
    if name == "SqliteQueue":
        from .store import SqliteQueue

        return SqliteQueue
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
