"""The running configuration as one immutable object, and opening the queue on its own.

``Runtime`` is what a reload replaces: the loaded configuration, the plugin context
built from it, the chain's plugin instances and the ``Chain`` that walks them. The
intake and the scheduler ask a ``RuntimeHolder`` for the current one per message, so a
reload is one assignment: new work sees the new runtime, work in progress keeps the one
it started with.

``open_queue`` opens only the queue backend of a configuration (its queue plugin's
``open_queue`` hook), for the administration commands that need nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

from .chain import Chain
from .clock import Clock, SystemClock
from .config import LoadedConfig
from .errors import ConfigError
from .events import Events
from .plugin import Control, Plugin, PluginContext
from .queue import QueueBackend
from .settings import Settings


@dataclass(frozen=True)
class Runtime:
    """One configuration in force: settings, plugin context, the chain's instances in YAML order."""

    config: LoadedConfig
    context: PluginContext
    plugins: tuple[Plugin, ...]
    chain: Chain

    @property
    def settings(self) -> Settings:
        return self.config.settings

    def plugin(self, name: str) -> Plugin | None:
        """The chain entry called ``name`` (None when there is none)."""
        return next((p for p in self.plugins if p.instance_name == name), None)


class RuntimeHolder:
    """The current ``Runtime``; ``swap`` replaces it in one step (a reload)."""

    def __init__(self, runtime: Runtime) -> None:
        self._current = runtime

    @property
    def current(self) -> Runtime:
        return self._current

    def swap(self, runtime: Runtime) -> Runtime:
        """Put ``runtime`` in force; returns the one it replaced."""
        old, self._current = self._current, runtime
        return old


def make_context(config: LoadedConfig, *, clock: Clock | None = None, events: Events | None = None,
                 queue: QueueBackend | None = None, control: Control | None = None) -> PluginContext:
    """The context every plugin instance of ``config`` gets."""
    clock = clock or SystemClock()
    return PluginContext(config.settings, config.base_dir, clock, events or Events(clock), queue, control)


def build_runtime(config: LoadedConfig, context: PluginContext,
                  keep: dict[str, Plugin] | None = None) -> tuple[Runtime, list[Plugin]]:
    """A runtime for ``config``: instances from ``keep`` (by name) where given, new ones otherwise.

    Returns the runtime and the new instances (whose ``startup`` the caller runs).
    """
    keep = keep or {}
    plugins: list[Plugin] = []
    fresh: list[Plugin] = []
    for spec in config.chain:
        instance = keep.get(spec.name)
        if instance is None:
            instance = spec.cls(spec.options, context, instance_name=spec.name)
            fresh.append(instance)
        else:
            instance.context = context
        plugins.append(instance)
    return Runtime(config, context, tuple(plugins), Chain(plugins)), fresh


async def queue_backend(config: LoadedConfig, context: PluginContext | None = None) -> QueueBackend:
    """The queue backend named by ``config.queue``, not opened yet (its plugin's ``open_queue`` hook)."""
    context = context or make_context(config)
    plugin = config.queue.cls(config.queue.options, context, instance_name=config.queue.name)
    backend = await Chain([plugin]).first("open_queue", context=context)
    if backend is None:
        raise ConfigError(f"queue plugin {config.queue.name!r} did not provide a queue")
    return backend


async def open_queue(config: LoadedConfig, context: PluginContext | None = None) -> QueueBackend:
    """Open the queue backend named by ``config.queue`` (and nothing else); the caller closes it."""
    backend = await queue_backend(config, context)
    await backend.open()
    return backend
