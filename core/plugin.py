"""The base class of every plugin, built-in or third-party, and what it is given."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

from .clock import Clock, SystemClock

if TYPE_CHECKING:
    from .events import Events
    from .gateway import Gateway
    from .queue import QueueBackend
    from .settings import Settings


class NoOptions(BaseModel):
    """Options of a plugin that takes none."""

    model_config = ConfigDict(extra="forbid")


@dataclass
class PluginContext:
    """What every plugin instance gets: settings, clock, events, queue, paths.

    ``queue`` is set once the queue backend is open (before ``startup``).
    ``gateway`` is the running gateway, for administration plugins (console,
    alerts, metrics): its scheduler, live sessions and ``reload()``.
    """

    settings: Settings
    base_dir: Path
    clock: Clock = field(default_factory=SystemClock)
    events: Events | None = None
    queue: QueueBackend | None = None
    gateway: Gateway | None = None

    def resolve_path(self, path: str | Path) -> Path:
        """A config path made absolute: relative paths are relative to the config file's folder."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else (self.base_dir / p)

    def emit(self, kind: str, text: str, *, level: str = "info", **data: Any) -> None:
        """Record a gateway event (see ``events.Events.emit``)."""
        if self.events is not None:
            self.events.emit(kind, text, level=level, **data)


class Plugin:
    """Base class for plugins.

    A plugin is a class registered under the entry point group
    ``mailpipe.plugins``; the entry point's name is the name used in YAML.
    The gateway instantiates it once per chain entry with its validated
    ``Options`` and a ``PluginContext``, then registers the instance with
    pluggy: methods decorated with ``@hookimpl`` (from
    ``mailpipe.core.hookspecs``) implement hooks.
    """

    name: ClassVar[str] = ""
    Options: ClassVar[type[BaseModel]] = NoOptions

    def __init__(self, options: BaseModel, context: PluginContext, *, instance_name: str | None = None) -> None:
        self.options = options
        self.context = context
        self.instance_name = instance_name or self.name
        self.log = logging.getLogger(f"mailpipe.plugins.{self.instance_name}")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.instance_name}>"

    def take_over(self, old: Plugin) -> None:
        """Called on a new instance that replaces ``old`` (same name and class) at a reload, before
        ``startup``: carry over what must outlive the old options (default: nothing)."""

    @classmethod
    def describe(cls) -> str:
        """First line of the class docstring, shown by ``pipeline plugins``."""
        return (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
