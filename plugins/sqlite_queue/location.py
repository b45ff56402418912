"""Where the sqlite queue's file is, and opening it for the administration commands without pydantic.

The ``pipeline queue``, ``log``, ``events`` and ``stats`` commands find the queue through
``open_queue_for_admin`` (the core's quick path, ``mailpipe.core.adminqueue``) when the
options are plain; anything unusual makes it answer None, and the command then validates
the configuration fully and opens the queue through the plugin class.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mailpipe.core.durations import parse_duration
from mailpipe.core.paths import resolve

if TYPE_CHECKING:
    from mailpipe.core.queue import QueueBackend

BUSY_TIMEOUT = 10.0
HISTORY_DAYS = 30.0
_OPTIONS = {"path", "busy_timeout", "history_days"}


def queue_file(path: str | Path | None, state_dir: Path, base_dir: Path) -> Path:
    """The queue file: ``path`` (relative to the config file's folder), else ``<state_dir>/queue.sqlite3``."""
    return resolve(path, base_dir) if path else state_dir / "queue.sqlite3"


def open_queue_for_admin(options: Mapping[str, Any], state_dir: Path, base_dir: Path) -> QueueBackend | None:
    """The queue of ``queue: {sqlite: options}`` (not opened yet), or None when the options need the
    full validation (an unknown key, a value of an unexpected type). With several workers' files,
    all of them together (``shards.py``)."""
    if not isinstance(options, Mapping) or set(options) - _OPTIONS:
        return None
    path, busy = options.get("path"), options.get("busy_timeout", BUSY_TIMEOUT)
    if path is not None and not isinstance(path, str):
        return None
    try:
        busy_timeout = parse_duration(busy)
    except ValueError:
        return None
    from mailpipe.core.workers.slot import WorkerSlot

    from .shards import open_queue
    from .store import SqliteQueue

    return open_queue(queue_file(path, state_dir, base_dir), WorkerSlot(),
                      lambda file: SqliteQueue(file, busy_timeout=busy_timeout))
