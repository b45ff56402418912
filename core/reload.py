"""Applying a new configuration to a running gateway without dropping mail (``Reloader.reload``).

What happens, in order:

1. the new configuration is loaded and validated (``load_config``); a bad one
   changes nothing;
2. a new ``Runtime`` is built: a plugin whose name, class and options are unchanged
   keeps its instance when the top-level settings are unchanged too (or when its class
   says ``reload_in_place = True``: the console, metrics and alerts plugins, which hold
   listeners and counters); every other entry gets a new instance (one that replaces an
   instance of the same name and class gets ``take_over(old)``); all get the new
   ``PluginContext`` carrying the new settings;
3. ``startup`` runs on the new instances; if one fails, they are shut down again and
   the old configuration stays in force;
4. the new runtime is swapped in (one assignment, ``RuntimeHolder.swap``): the scheduler
   and the intake read the runtime in force for each message, so new work uses the new
   plugins, while deliveries in flight finish with the runtime they started with;
   ``delivery.*`` (schedule, send immediately, port, timeout, concurrency) take effect for
   the next run;
5. when ``listen``, ``relay``, ``intake`` or ``hostname`` changed, the intake listeners are
   closed and opened again with the new settings (sessions in progress finish on the old
   ones); if they cannot open, the old runtime is put back;
6. the replaced instances get ``shutdown`` once the deliveries that were in flight at the
   swap have finished.

``queue`` and ``state_dir`` need a restart: a change there is reported in
``ReloadResult.restart_needed`` and in the ``config.reloaded`` event.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from .chain import Chain
from .config import EMBEDDED, LoadedConfig, load_config
from .errors import ConfigError, PluginFailure
from .events import Events
from .plugin import Plugin
from .runtime import Runtime, RuntimeHolder, build_runtime

log = logging.getLogger("mailpipe.reload")
_INTAKE_KEYS = ("listen", "relay", "intake", "hostname")
_RESTART_KEYS = ("queue", "state_dir")


@dataclass
class ReloadResult:
    """What a reload did."""

    config: LoadedConfig
    started: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    retired: list[str] = field(default_factory=list)
    listeners_restarted: bool = False
    restart_needed: list[str] = field(default_factory=list)


def _settings_dump(config: LoadedConfig) -> dict[str, Any]:
    return config.settings.model_dump(mode="json", exclude={"chain"})


class Reloader:
    """Reloads for one gateway: one at a time, each a swap of the runtime in force.

    ``restart_intake`` reopens the listeners with the runtime in force; ``inflight``
    gives the delivery tasks running now; ``wake`` tells the scheduler to look again.
    """

    def __init__(self, runtimes: RuntimeHolder, events: Events, *,
                 restart_intake: Callable[[], Awaitable[bool]],
                 inflight: Callable[[], list[asyncio.Task[None]]], wake: Callable[[], None]) -> None:
        self.runtimes = runtimes
        self.events = events
        self.restart_intake = restart_intake
        self.inflight = inflight
        self.wake = wake
        self._lock = asyncio.Lock()
        self._retiring: set[asyncio.Task[None]] = set()

    async def reload(self, config: LoadedConfig | None = None) -> ReloadResult:
        """Apply ``config`` (default: the configuration file in force, read again)."""
        async with self._lock:
            if config is None:
                source = self.runtimes.current.config.source
                if source == EMBEDDED:
                    raise ConfigError("the embedded default configuration cannot be reloaded; start with -c FILE")
                config = await asyncio.to_thread(load_config, source)
            return await self._apply(config)

    async def reload_logged(self) -> None:
        """``reload`` for SIGHUP: a refused configuration is logged, the running one stays."""
        try:
            await self.reload()
        except ConfigError as exc:
            self.events.emit("config.reload_failed", str(exc), level="error")
        except Exception:  # noqa: BLE001 - a signal handler must not crash the server
            log.exception("reload failed")

    async def wait_retired(self) -> None:
        """Wait for replaced plugins' ``shutdown`` (at gateway stop)."""
        if self._retiring:
            await asyncio.wait(list(self._retiring))

    async def _apply(self, new: LoadedConfig) -> ReloadResult:
        old = self.runtimes.current
        old_dump, new_dump = _settings_dump(old.config), _settings_dump(new)
        settings_changed = old_dump != new_dump
        result = ReloadResult(new, restart_needed=[k for k in _RESTART_KEYS if old_dump.get(k) != new_dump.get(k)])
        queue_changed = old.config.queue.name != new.queue.name or old.config.queue.options != new.queue.options
        if queue_changed and "queue" not in result.restart_needed:
            result.restart_needed.append("queue")

        keep: dict[str, Plugin] = {}
        for spec in new.chain:
            instance = old.plugin(spec.name)
            same = instance is not None and type(instance) is spec.cls and instance.options == spec.options
            if same and (not settings_changed or spec.cls.reload_in_place):
                assert instance is not None
                keep[spec.name] = instance
        context = dataclasses.replace(old.context, settings=new.settings)
        old_contexts = {id(p): p.context for p in old.plugins}
        runtime, fresh = build_runtime(new, context, keep)
        for instance in fresh:
            previous = old.plugin(instance.instance_name)
            if previous is not None and type(previous) is type(instance):
                instance.take_over(previous)
        result.kept = [p.instance_name for p in runtime.plugins if p.instance_name in keep]
        result.started = [p.instance_name for p in fresh]
        kept_ids = {id(p) for p in runtime.plugins}
        retired = [p for p in old.plugins if id(p) not in kept_ids]
        result.retired = [p.instance_name for p in retired]

        try:
            await Chain(fresh).each("startup", context=context)
        except (PluginFailure, ConfigError) as exc:
            _restore_contexts(old, old_contexts)
            await _shutdown(fresh, "a reload that failed")
            raise ConfigError(f"{new.source}: reload refused, the running configuration stays: {exc}") from exc

        runtime = dataclasses.replace(runtime, chain=Chain(runtime.plugins, timeouts=old.chain.timeouts))
        self.runtimes.swap(runtime)
        if any(old_dump.get(k) != new_dump.get(k) for k in _INTAKE_KEYS):
            try:
                result.listeners_restarted = await self.restart_intake()
            except ConfigError:
                self.runtimes.swap(old)
                _restore_contexts(old, old_contexts)
                await self.restart_intake()
                await _shutdown(fresh, "a reload that failed")
                raise

        if retired:
            task = asyncio.create_task(_retire(retired, self.inflight()), name="mailpipe-reload-retire")
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)
        self.wake()
        note = f"; restart needed for: {', '.join(result.restart_needed)}" if result.restart_needed else ""
        self.events.emit(
            "config.reloaded",
            f"configuration {new.source} applied: new {', '.join(result.started) or 'none'}, "
            f"kept {', '.join(result.kept) or 'none'}, retired {', '.join(result.retired) or 'none'}"
            f"{', listeners reopened' if result.listeners_restarted else ''}{note}",
            config=new.source, restart_needed=result.restart_needed,
        )
        return result


def _restore_contexts(runtime: Runtime, contexts: dict[int, Any]) -> None:
    """Give kept plugins back the context they had (a reload that failed)."""
    for plugin in runtime.plugins:
        plugin.context = contexts.get(id(plugin), plugin.context)


async def _retire(plugins: list[Plugin], inflight: list[asyncio.Task[None]]) -> None:
    """``shutdown`` for replaced plugins once the deliveries in flight at the swap have finished."""
    if inflight:
        await asyncio.wait(inflight)
    await _shutdown(plugins, "reload")


async def _shutdown(plugins: list[Plugin], why: str) -> None:
    try:
        await Chain(plugins).each("shutdown")
    except Exception:  # noqa: BLE001 - a failing shutdown must not stop the gateway
        log.exception("shutdown after %s failed", why)
