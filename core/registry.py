"""Finds installed plugins: the entry point group ``mailpipe.plugins``.

Built-in plugins are registered in mailpipe's own pyproject.toml exactly as a
third-party package registers its plugins, so they are found the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

from .errors import ConfigError
from .plugin import Plugin

GROUP = "mailpipe.plugins"


@dataclass(frozen=True)
class Installed:
    """One installed plugin: its YAML name, entry point and distribution."""

    name: str
    entry_point: EntryPoint
    distribution: str

    def load(self) -> type[Plugin]:
        """Import the plugin class; a broken import is reported with the plugin's name."""
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
        dist = ep.dist.name if ep.dist is not None else "?"
        found.setdefault(ep.name, Installed(ep.name, ep, dist))
    return found


def load_plugin(name: str) -> type[Plugin]:
    """The plugin class installed under ``name``; ConfigError naming the known ones if none."""
    plugins = installed()
    if name not in plugins:
        known = ", ".join(sorted(plugins)) or "none"
        raise ConfigError(f"unknown plugin {name!r} (installed: {known})")
    return plugins[name].load()
