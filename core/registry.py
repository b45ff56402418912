"""Finds installed plugins: the entry point group ``mailpipe.plugins``.

Built-in plugins are registered in mailpipe's own pyproject.toml exactly as a
third-party package registers its plugins, so they are found the same way.
Finding them imports nothing of the plugins; ``Installed.load`` imports the class.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING

from .errors import ConfigError

if TYPE_CHECKING:
    from .plugin import Plugin

GROUP = "mailpipe.plugins"


@dataclass(frozen=True)
class Installed:
    """One installed plugin: its YAML name and entry point; its distribution's name and version on demand."""

    name: str
    entry_point: EntryPoint

    @property
    def distribution(self) -> str:
        """The name of the distribution that registers the plugin (read from its metadata)."""
        return self.entry_point.dist.name if self.entry_point.dist is not None else "?"

    @property
    def version(self) -> str:
        """The version of that distribution (``pipeline plugins``)."""
        return self.entry_point.dist.version if self.entry_point.dist is not None else "?"

    def load(self) -> type[Plugin]:
        """Import the plugin class; a broken import is reported with the plugin's name."""
        from .plugin import Plugin

        try:
            cls = self.entry_point.load()
        except Exception as exc:  # noqa: BLE001 - any import failure is reported the same way
            raise ConfigError(f"plugin {self.name!r} ({self.entry_point.value}) cannot be loaded: {exc}") from exc
        if not (isinstance(cls, type) and issubclass(cls, Plugin)):
            raise ConfigError(f"plugin {self.name!r} ({self.entry_point.value}) is not a mailpipe Plugin class")
        return cls


def installed() -> dict[str, Installed]:
    """All installed plugins by name."""
    found: dict[str, Installed] = {}
    for ep in entry_points(group=GROUP):
        found.setdefault(ep.name, Installed(ep.name, ep))
    return found


def unknown_plugin(name: str, known: list[str]) -> str:
    """``unknown plugin 'smarthots' (did you mean 'smarthost'? installed: ...)``."""
    import difflib

    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown plugin {name!r} ({hint}installed: {', '.join(sorted(known)) or 'none'})"


def find(name: str) -> Installed:
    """The installed plugin called ``name``; ConfigError naming the nearest and the known ones if none."""
    plugins = installed()
    if name not in plugins:
        raise ConfigError(unknown_plugin(name, list(plugins)))
    return plugins[name]


def load_plugin(name: str) -> type[Plugin]:
    """The plugin class installed under ``name``; ConfigError naming the known ones if none."""
    return find(name).load()
