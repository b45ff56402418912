"""The base class of every plugin, built-in or third-party, and what it is given."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict

from .clock import Clock, SystemClock
from .collect.status import MailboxStatus
from .events import Events
from .message import Route
from .queue import QueueBackend
from .sessions import Sessions
from .settings import Settings


@dataclass(frozen=True)
class LoginCheck:
    """One login ``pipeline auth test`` tried: whether it worked and what happened, step by step.

    ``login`` names it without secrets (``login:gateway@example.org``); ``steps`` are short
    secret-free texts in order (token fetched, connected, logged in with which mechanism).
    """

    login: str
    ok: bool
    steps: list[str] = field(default_factory=list)


class NoOptions(BaseModel):
    """Options of a plugin that takes none."""

    model_config = ConfigDict(extra="forbid")


class Control(Protocol):
    """What an administration plugin (console, metrics, alerts) may ask of the running gateway.

    Given as ``PluginContext.control`` by ``pipeline serve`` only (None for the CLI's
    one-shot commands).
    """

    @property
    def config_source(self) -> str:
        """The configuration file in force (or ``<embedded default>``)."""
        ...

    @property
    def sessions(self) -> Sessions:
        """The SMTP sessions in progress, in and out."""
        ...

    def wake(self, *, force: bool = False) -> None:
        """Look for due mail now (a message was stored); ``force`` starts a run outside the schedule."""
        ...

    async def reload(self) -> Any:
        """Read the configuration file again and apply it (see ``core/reload.py``); ConfigError if refused."""
        ...

    def collections(self) -> list[MailboxStatus]:
        """Each account that collects mail from a POP3 mailbox, and how its collections went (``core/collect``)."""
        ...

    def collect_now(self, account: str | None = None) -> int:
        """Start collecting ``account`` (address or username; every collecting account for None) at once;
        returns how many accounts that is."""
        ...


@dataclass(frozen=True)
class PluginContext:
    """What every plugin instance gets: settings, paths, clock, events, and (when open) the queue.

    A reload makes a new context (new settings) and hands it to every plugin of the new
    chain. ``queue`` is the open queue backend (None while only the configuration is
    checked); ``control`` is the running gateway's ``Control`` (``pipeline serve`` only).
    """

    settings: Settings
    base_dir: Path
    clock: Clock = field(default_factory=SystemClock)
    events: Events = field(default_factory=Events)
    queue: QueueBackend | None = None
    control: Control | None = None

    def resolve_path(self, path: str | Path) -> Path:
        """A config path made absolute: relative paths are relative to the config file's folder."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else (self.base_dir / p)

    def emit(self, kind: str, text: str, *, level: str = "info", **data: Any) -> None:
        """Record a gateway event (see ``events.Events.emit``)."""
        self.events.emit(kind, text, level=level, **data)


class Plugin:
    """Base class for plugins.

    A plugin is a class registered under the entry point group
    ``mailpipe.plugins``; the entry point's name is the name used in YAML.
    The gateway instantiates it once per chain entry with its validated
    ``Options`` and a ``PluginContext``, then registers the instance with
    pluggy: methods decorated with ``@hookimpl`` (from
    ``mailpipe.core.hookspecs``) implement hooks.

    ``reload_in_place``: when true, a reload that leaves this entry's options unchanged
    keeps the instance even if other settings changed (it gets the new context); for
    plugins that hold listeners or counters (console, metrics, alerts).
    """

    name: ClassVar[str] = ""
    Options: ClassVar[type[BaseModel]] = NoOptions
    reload_in_place: ClassVar[bool] = False

    def __init__(self, options: BaseModel, context: PluginContext, *, instance_name: str | None = None) -> None:
        self.options = options
        self.context = context
        self.instance_name = instance_name or self.name
        self.log = logging.getLogger(f"mailpipe.plugins.{self.instance_name}")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.instance_name}>"

    def owns(self, route: Route) -> bool:
        """Whether this chain entry made ``route`` (and so delivers it)."""
        return route.plugin == self.instance_name

    def config_warnings(self) -> list[str]:
        """Called by ``pipeline check`` on the built instance (nothing started): warnings about what the
        options cannot show (a key file unreadable or too weak, ...); empty when all is well."""
        return []

    async def test_logins(self) -> list[LoginCheck]:
        """Called by ``pipeline auth test``: make each login this entry would make (fetch its token, connect,
        authenticate, QUIT) and send nothing; one ``LoginCheck`` per login, none when it makes no logins."""
        return []

    def take_over(self, old: Plugin) -> None:
        """Called on a new instance that replaces ``old`` (same name and class) at a reload, before
        ``startup``: carry over what must outlive the old options (default: nothing)."""

    @classmethod
    def describe(cls) -> str:
        """First line of the class docstring, shown by ``pipeline plugins``."""
        return (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
