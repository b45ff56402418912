"""Opening the configured queue for the administration commands (queue, log, events, stats), quickly.

Those commands need only ``state_dir``, ``hostname`` and ``queue`` of the configuration.
``quick_target`` reads just those keys from the file and asks the queue plugin's module
for an ``open_queue_for_admin(options, state_dir, base_dir)`` function (optional, see
docs/plugins.md): no pydantic model is built and no chain plugin is imported, so a command
such as ``pipeline queue list`` starts in a fraction of the time a full load takes. Whenever
it cannot be sure (an unusual value, a plugin without that function) it answers None and
``open_admin_queue`` loads those keys with the full validation instead
(``load_config(only_queue=True)``), which also reports every mistake in them.

A queue that does not exist yet is refused (``QueueError`` naming it), never created: a
mistyped ``state_dir`` must not look like an empty queue.
"""

from __future__ import annotations

import importlib
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .configfile import read_yaml, substitute_env
from .errors import ConfigError
from .paths import default_state_dir, resolve
from .queue import QueueBackend, QueueError

if TYPE_CHECKING:
    from .events import Events


@dataclass
class AdminQueue:
    """The configuration's queue (open once ``open_admin_queue`` returned it) and what the commands report."""

    source: str
    state_dir: Path
    hostname: str | None
    queue: QueueBackend

    @property
    def node(self) -> str:
        """This gateway's name in events (``hostname``, else the machine's name)."""
        return self.hostname or socket.getfqdn()

    def events(self) -> Events:
        """An event emitter whose events are logged and kept in this queue's event log (audit trail)."""
        from .events import Events

        events = Events(node=self.node)
        events.attach(store=self.queue.add_event)
        return events


def quick_target(path: str | Path | None) -> AdminQueue | None:
    """The queue of the config file at ``path`` without the full validation, or None when that is needed."""
    try:
        raw, source, base = read_yaml(Path(path) if path is not None else None)
    except ConfigError:
        return None
    data, problems = substitute_env({k: raw[k] for k in ("hostname", "state_dir", "queue") if k in raw})
    hostname, state_dir, entry = data.get("hostname"), data.get("state_dir"), data.get("queue", {"sqlite": {}})
    if problems or not isinstance(hostname, str | None) or not isinstance(state_dir, str | None):
        return None
    if not (isinstance(entry, dict) and len(entry) == 1):
        return None
    (name, options), = entry.items()
    opener = _opener(str(name))
    if opener is None:
        return None
    state = resolve(state_dir, base) if state_dir else resolve(default_state_dir(), base)
    backend = opener(options or {}, state, base)
    return AdminQueue(source, state, hostname, backend) if isinstance(backend, QueueBackend) else None


def _opener(name: str) -> Any:
    """The ``open_queue_for_admin`` function of the module that registers queue plugin ``name``, if any."""
    from .distinfo import entry_point_module
    from .registry import GROUP

    found = entry_point_module(GROUP, name)
    if found is None:
        return None
    try:
        module = importlib.import_module(found)
    except Exception:  # noqa: BLE001 - the full path reports a plugin that cannot be loaded
        return None
    return getattr(module, "open_queue_for_admin", None)


async def _full_target(path: str | Path | None) -> AdminQueue:
    from .config import load_config
    from .runtime import queue_backend

    config = load_config(path, only_queue=True)
    backend = await queue_backend(config)
    return AdminQueue(config.source, config.settings.state_dir, config.settings.hostname, backend)


async def open_admin_queue(path: str | Path | None) -> AdminQueue:
    """Open the queue of the configuration at ``path`` (None: the embedded default) for a command.

    ``ConfigError`` when those keys of the configuration are wrong; ``QueueError`` when the
    queue does not exist yet or cannot be opened. The caller closes ``queue``.
    """
    target = quick_target(path) or await _full_target(path)
    if not await target.queue.exists():
        raise QueueError(f"queue {target.queue.location} does not exist: nothing has been queued with this "
                         f"configuration ({target.source}, state_dir {target.state_dir}); check state_dir and "
                         "queue, or start `pipeline serve` once to create it")
    await target.queue.open()
    return target
