"""Applying a new configuration to a running gateway without dropping mail (``Gateway.reload``).

What happens, in order:

1. the new configuration is loaded and validated (``load_config``); a bad one
   changes nothing;
2. a new chain is built: a plugin whose name, class and options are unchanged
   keeps its instance when the top-level settings are unchanged too (or when
   its class says ``reload_in_place = True``: the console, metrics and alerts
   plugins, which hold listeners and counters); every other plugin gets a new
   instance with a new ``PluginContext`` carrying the new settings (a new
   instance replacing one of the same name and class gets ``take_over(old)``);
3. ``startup`` runs on the new instances; if one fails, they are shut down
   again and the old configuration stays in force;
4. the new chain, settings and context are swapped in: the scheduler and the
   intake read ``gateway.chain`` for each message, so new work uses the new
   plugins, while deliveries in flight finish with the instances they started
   with; ``delivery.*`` (schedule, send immediately, port, timeout,
   concurrency) take effect for the next run;
5. when ``listen``, ``relay``, ``intake`` or ``hostname`` changed, the intake
   listeners are closed and opened again with the new settings (sessions in
   progress finish on the old ones);
6. the replaced instances get ``shutdown`` once the deliveries that were in
   flight at the swap have finished.

``queue`` and ``state_dir`` need a restart: a change there is reported in
``ReloadResult.restart_needed`` and in the ``config.reloaded`` event.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .chain import Chain
from .config import EMBEDDED, LoadedConfig, load_config
from .errors import ConfigError, PluginFailure
from .intake import Intake
from .plugin import Plugin, PluginContext

if TYPE_CHECKING:
    from .gateway import Gateway

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


def _lock(gw: Gateway) -> asyncio.Lock:
    lock = getattr(gw, "_reload_lock", None)
    if lock is None:
        lock = asyncio.Lock()
        gw._reload_lock = lock  # type: ignore[attr-defined]
    return lock


async def reload(gw: Gateway, config: LoadedConfig | None = None) -> ReloadResult:
    """Apply ``config`` (default: the gateway's config file read again) to the running gateway."""
    async with _lock(gw):
        if config is None:
            if gw.config.source == EMBEDDED:
                raise ConfigError("the embedded default configuration cannot be reloaded; start with -c FILE")
            config = await asyncio.to_thread(load_config, gw.config.source)
        return await _apply(gw, config)


async def _apply(gw: Gateway, new: LoadedConfig) -> ReloadResult:
    old_config, old_dump, new_dump = gw.config, _settings_dump(gw.config), _settings_dump(new)
    settings_changed = old_dump != new_dump
    result = ReloadResult(new, restart_needed=[k for k in _RESTART_KEYS if old_dump.get(k) != new_dump.get(k)])
    queue_changed = old_config.queue.name != new.queue.name or old_config.queue.options != new.queue.options
    if queue_changed and "queue" not in result.restart_needed:
        result.restart_needed.append("queue")

    context = dataclasses.replace(gw.context, settings=new.settings)
    old_by_name = {p.instance_name: p for p in gw.plugins}
    plugins: list[Plugin] = []
    fresh: list[Plugin] = []
    for spec in new.chain:
        old = old_by_name.get(spec.name)
        same = old is not None and type(old) is spec.cls and old.options == spec.options
        if same and (not settings_changed or getattr(spec.cls, "reload_in_place", False)):
            assert old is not None
            plugins.append(old)
            result.kept.append(spec.name)
        else:
            instance = spec.cls(spec.options, context, instance_name=spec.name)
            if old is not None and type(old) is spec.cls:
                instance.take_over(old)
            plugins.append(instance)
            fresh.append(instance)
            result.started.append(spec.name)
    kept_ids = {id(p) for p in plugins}
    retired = [p for p in gw.plugins if id(p) not in kept_ids]
    result.retired = [p.instance_name for p in retired]

    try:
        await Chain(fresh).each("startup", context=context)
    except (PluginFailure, ConfigError) as exc:
        await _shutdown(fresh, "a reload that failed")
        raise ConfigError(f"{new.source}: reload refused, the running configuration stays: {exc}") from exc

    old_state = (gw.config, gw.settings, gw.context, gw.plugins, gw.chain, gw.scheduler.delivery)
    _swap(gw, new, context, plugins, Chain(plugins, timeouts=gw.chain.timeouts))
    for plugin in plugins:
        if id(plugin) not in {id(p) for p in fresh}:
            plugin.context = context
    if any(old_dump.get(k) != new_dump.get(k) for k in _INTAKE_KEYS) and gw.intake.servers:
        try:
            await _restart_intake(gw)
            result.listeners_restarted = True
        except ConfigError:
            config, settings, old_context, old_plugins, chain, _delivery = old_state
            _swap(gw, config, old_context, old_plugins, chain)
            for plugin in old_plugins:
                plugin.context = old_context
            await _restart_intake(gw)
            await _shutdown(fresh, "a reload that failed")
            raise

    inflight = list(gw.scheduler.inflight.values())
    if retired:
        task = asyncio.create_task(_retire(retired, inflight), name="mailpipe-reload-retire")
        pending = getattr(gw, "_retiring", set())
        pending.add(task)
        task.add_done_callback(pending.discard)
        gw._retiring = pending  # type: ignore[attr-defined]
    gw.scheduler.wake()
    note = f"; restart needed for: {', '.join(result.restart_needed)}" if result.restart_needed else ""
    gw.events.emit(
        "config.reloaded",
        f"configuration {new.source} applied: new {', '.join(result.started) or 'none'}, "
        f"kept {', '.join(result.kept) or 'none'}, retired {', '.join(result.retired) or 'none'}"
        f"{', listeners reopened' if result.listeners_restarted else ''}{note}",
        config=new.source, restart_needed=result.restart_needed,
    )
    return result


def _swap(gw: Gateway, config: LoadedConfig, context: PluginContext, plugins: list[Plugin], chain: Chain) -> None:
    gw.config = config
    gw.settings = config.settings
    gw.context = context
    gw.plugins = plugins
    gw.chain = chain
    gw.events.chain = chain
    gw.scheduler.delivery = config.settings.delivery


async def _restart_intake(gw: Gateway) -> None:
    """Close the listeners and open them with the gateway's current settings."""
    await gw.intake.stop()
    intake = Intake(gw)
    try:
        await intake.start()
    finally:
        gw.intake = intake


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


async def reload_logged(gw: Gateway) -> None:
    """``reload`` for SIGHUP: a refused configuration is logged, the running one stays."""
    try:
        await reload(gw)
    except ConfigError as exc:
        gw.events.emit("config.reload_failed", str(exc), level="error")
    except Exception:  # noqa: BLE001 - a signal handler must not crash the server
        log.exception("reload failed")
