"""Warnings about configurations that are valid but cannot deliver mail (``pipeline check``, ``serve``).

A configuration can pass every validation and still deliver nothing: an empty file, a
chain of only ``retry``, ``direct`` before a ``smarthost`` with ``domains:`` (``direct``
routes every recipient, so the smarthost never sees one). ``warnings`` names the hook
that has no implementation, or the chain entry that can never be reached and the entry
that takes its mail first. Reachability is found by asking each routing entry, alone,
to route a recipient of a made-up domain: one that routes it takes everything.
"""

from __future__ import annotations

import time

from .ids import new_queue_id
from .message import Message, Recipient
from .runtime import Runtime

PROBE = "postmaster@probe.mailpipe-check.invalid"
"""A recipient no plugin has a reason to know: a plugin that routes it routes every recipient."""


def _where(runtime: Runtime, name: str) -> str:
    index = next((i for i, p in enumerate(runtime.plugins) if p.instance_name == name), -1)
    return f"chain[{index}] {name}"


async def routes_everything(runtime: Runtime, name: str) -> bool:
    """Whether the chain entry ``name``, asked alone, routes a recipient of a made-up domain."""
    from .chain import Chain

    plugin = runtime.plugin(name)
    if plugin is None:
        return False
    message = Message(new_queue_id(), "", [Recipient(PROBE)], time.time())
    try:
        routes, unrouted = await Chain([plugin]).route(message, [PROBE])
    except Exception:  # noqa: BLE001 - a plugin that cannot route a probe is not a catch-all
        return False
    return not unrouted and bool(routes)


async def warnings(runtime: Runtime) -> list[str]:
    """Why mail configured like ``runtime`` cannot be delivered (or some entry never takes part); [] when fine."""
    order = runtime.chain.order()
    routers, deliverers = order.get("route", []), order.get("deliver", [])
    source = runtime.config.source
    if not runtime.plugins:
        return [f"{source}: chain is empty: no plugin routes or delivers mail, so every message would wait in "
                "the queue (add smarthost or direct to chain)"]
    found: list[str] = []
    if not routers:
        found.append(f"{source}: chain: no plugin implements the route hook, so no recipient can be routed and "
                     "every message would wait in the queue (add smarthost or direct to chain)")
    elif not deliverers:
        found.append(f"{source}: chain: no plugin implements the deliver hook, so no route can be delivered")
    for i, name in enumerate(routers):
        if not await routes_everything(runtime, name):
            continue
        for later in routers[i + 1:]:
            found.append(f"{source}: {_where(runtime, later)} never sees any mail: {_where(runtime, name)} routes "
                         f"every recipient before it (put {later} first)")
        break
    return found
