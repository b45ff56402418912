"""The plugin chain: instances in YAML order, and the walker that calls their hooks.

The async convention (see ``hookspecs``): the pipeline never calls
``pm.hook.NAME()``. ``Chain.first`` and ``Chain.each`` walk the hook
implementations in chain order and await each result that is awaitable, so an
``async def`` returning ``None`` means "not mine" exactly like a plain ``def``.
Each call is bounded in time; an unexpected exception or a time-out becomes a
``PluginFailure`` (temporary), logged with the plugin's name.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Iterable
from typing import Any

import pluggy

from . import hookspecs
from .errors import PluginFailure, SMTPError, TemporaryError
from .message import Message, Route, RouteVia
from .plugin import Plugin

log = logging.getLogger("mailpipe.chain")

DEFAULT_TIMEOUTS: dict[str, float] = {
    "accept": 60.0,
    "route": 60.0,
    "authenticate": 120.0,
    "before_send": 120.0,
    "deliver": 1800.0,
    "on_failure": 30.0,
    "open_queue": 60.0,
    "startup": 60.0,
    "shutdown": 60.0,
    "explain_route": 60.0,
    "explain_accept": 60.0,
}


class Chain:
    """Plugins registered with pluggy in chain order, and hook calls over them.

    Plugins are registered in reverse so that pluggy's own order (last
    registered first) is the YAML order too, ``tryfirst``/``trylast`` included.
    """

    def __init__(self, plugins: Iterable[Plugin], timeouts: dict[str, float] | None = None) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.plugins = list(plugins)
        for plugin in reversed(self.plugins):
            self.pm.register(plugin, name=plugin.instance_name)
        self.timeouts = {**DEFAULT_TIMEOUTS, **(timeouts or {})}
        self._implementations: dict[str, list[pluggy.HookImpl]] = {}

    def implementations(self, hook: str) -> list[pluggy.HookImpl]:
        """Implementations of ``hook`` in the order they are called (worked out once: the chain never changes,
        a reload builds a new one)."""
        found = self._implementations.get(hook)
        if found is None:
            found = self._implementations[hook] = list(reversed(getattr(self.pm.hook, hook).get_hookimpls()))
        return found

    def order(self) -> dict[str, list[str]]:
        """Hook name -> plugin names in call order (what ``pipeline check`` prints)."""
        names = [n for n in dir(hookspecs) if isinstance(getattr(self.pm.hook, n, None), pluggy.HookCaller)]
        return {n: [i.plugin_name for i in self.implementations(n)] for n in sorted(names)}

    async def call(self, impl: pluggy.HookImpl, hook: str, kwargs: dict[str, Any]) -> Any:
        """Call one implementation with the arguments it asks for, bounded in time."""
        timeout = self.timeouts.get(hook, 60.0)
        try:
            result = impl.function(*[kwargs[name] for name in impl.argnames])
            if inspect.isawaitable(result):
                async with asyncio.timeout(timeout):  # in this task: wait_for would start a task per call
                    result = await result
            return result
        except SMTPError:
            raise
        except TimeoutError as exc:
            log.error("plugin %s: %s timed out after %.0fs", impl.plugin_name, hook, timeout)
            raise PluginFailure(impl.plugin_name, hook, f"timed out after {timeout:.0f}s") from exc
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("plugin %s raised in %s", impl.plugin_name, hook)
            raise PluginFailure(impl.plugin_name, hook, f"{type(exc).__name__}: {exc}") from exc

    async def first(self, hook: str, **kwargs: Any) -> Any:
        """First non-None result in chain order, or None."""
        for impl in self.implementations(hook):
            result = await self.call(impl, hook, kwargs)
            if result is not None:
                return result
        return None

    async def each(self, hook: str, **kwargs: Any) -> list[Any]:
        """Call every implementation in chain order; the non-None results."""
        results = []
        for impl in self.implementations(hook):
            result = await self.call(impl, hook, kwargs)
            if result is not None:
                results.append(result)
        return results

    async def route(self, message: Message, recipients: list[str]) -> tuple[list[Route], list[str]]:
        """Walk ``route`` in chain order, *per recipient*: each plugin sees the recipients no earlier one took.

        Returns the routes (each naming the chain entry that made it) and the recipients
        no plugin took. An answer may also hand recipients to a named chain entry
        (``RouteVia``, a rule's ``route_via``): they are offered to that entry's ``route``
        only, and get no route when it does not take them. An ``SMTPError`` from a plugin
        passes through.
        """
        routes: list[Route] = []
        left = list(recipients)
        refused: list[str] = []
        for impl in self.implementations("route"):
            if not left:
                break
            answer = await self.call(impl, "route", {"message": message, "recipients": list(left)})
            for r in answer or []:
                wanted = [x for x in r.recipients if x in left]
                if not wanted:
                    continue
                left = [x for x in left if x not in wanted]
                if isinstance(r, RouteVia):
                    taken = await self._route_via(message, r.entry, wanted)
                    routes += taken
                    covered = {x for t in taken for x in t.recipients}
                    refused += [x for x in wanted if x not in covered]
                else:
                    r.recipients = wanted
                    routes.append(r)
        return routes, left + refused

    async def _route_via(self, message: Message, entry: str, recipients: list[str]) -> list[Route]:
        """The routes the chain entry ``entry`` makes for ``recipients`` (none when it has no ``route``)."""
        impl = next((i for i in self.implementations("route") if i.plugin_name == entry), None)
        if impl is None:
            log.warning("%s: route_via %r: no chain entry of that name routes mail", message.id, entry)
            return []
        answer = await self.call(impl, "route", {"message": message, "recipients": list(recipients)})
        routes: list[Route] = []
        left = list(recipients)
        for r in answer or []:
            if isinstance(r, RouteVia):  # no chains of hand-overs: they could loop
                continue
            r.recipients = [x for x in r.recipients if x in left]
            if r.recipients:
                routes.append(r)
                left = [x for x in left if x not in r.recipients]
        if left:
            log.warning("%s: route_via %r: the entry did not take %s", message.id, entry, ", ".join(left))
        return routes

    def owner(self, route: Route) -> Plugin | None:
        """The chain entry that made ``route`` (``route.plugin``), or None when it is not in this chain."""
        return next((p for p in self.plugins if p.instance_name == route.plugin), None)

    async def call_owner(self, route: Route, hook: str, /, **kwargs: Any) -> Any:
        """Call ``hook`` on the plugin that made ``route`` only (``deliver``, ``explain_route``).

        ``TemporaryError`` (451 4.3.5) when no chain entry of that name implements the hook.
        """
        for impl in self.implementations(hook):
            if impl.plugin_name == route.plugin:
                return await self.call(impl, hook, kwargs)
        raise TemporaryError(f"no chain entry {route.plugin!r} with a {hook} hook for this route", 451, "4.3.5")

    def notify(self, hook: str, **kwargs: Any) -> None:
        """Call an observer hook on every plugin without waiting; errors are logged, never raised."""
        for impl in self.implementations(hook):
            try:
                result = impl.function(*[kwargs[name] for name in impl.argnames])
                if inspect.isawaitable(result):
                    task = asyncio.ensure_future(result)
                    task.add_done_callback(_log_task_error(impl.plugin_name, hook))
            except Exception:
                log.exception("plugin %s raised in %s", impl.plugin_name, hook)


def _log_task_error(plugin: str, hook: str):  # noqa: ANN202
    def done(task: asyncio.Future[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("plugin %s raised in %s: %r", plugin, hook, task.exception())

    return done
