"""``pipeline route ADDRESS``: a dry run of how one recipient would leave; nothing is sent.

The chain's plugins are built (no queue, no ``startup``); ``route`` is walked as for real mail,
then the plugin that made each route explains it (``explain_route``: hosts in order, TLS,
credentials mode; never a password).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import click

from .options import config_option, json_option, load
from .output import echo_json
from .runner import run
from .survey import built

if TYPE_CHECKING:
    from ..chain import Chain
    from ..config import LoadedConfig
    from ..message import Route

_HEAD = ("recipient", "plugin", "kind", "destination")


async def explain(chain: Chain, route: Route) -> dict[str, Any]:
    """The facts the route's own plugin gives about it; empty when that plugin has no ``explain_route``."""
    if not any(impl.plugin_name == route.plugin for impl in chain.implementations("explain_route")):
        return {}
    return await chain.call_owner(route, "explain_route", route=route) or {}


async def dry_run(config: LoadedConfig, address: str, sender: str) -> list[dict[str, Any]]:
    """One row per route (recipients, plugin, kind, destination and the plugin's facts), then the unrouted."""
    from ..ids import new_queue_id
    from ..message import Message, Recipient
    from ..runtime import make_context

    runtime = built(config, make_context(config))
    message = Message(new_queue_id(), sender, [Recipient(address)], time.time())
    routes, unrouted = await runtime.chain.route(message, [address])
    rows: list[dict[str, Any]] = []
    for r in routes:
        facts = await explain(runtime.chain, r)
        rows.append({"recipient": r.recipients, "plugin": r.plugin, "kind": r.kind,
                     "destination": r.destination, **facts})
    for u in unrouted:
        rows.append({"recipient": [u], "plugin": None, "kind": "none", "destination": "no route"})
    return rows


@click.command()
@config_option
@click.argument("address")
@click.option("--sender", default="", help="envelope sender for the dry run")
@json_option
@click.pass_context
def route(ctx: click.Context, address: str, sender: str, as_json: bool) -> None:
    """Dry run: how a recipient would leave (route, hosts in order, credentials mode); sends nothing."""
    config = load(ctx)
    rows = run(dry_run(config, address, sender))
    if as_json:
        echo_json(rows)
        return
    for r in rows:
        click.echo(f"{', '.join(r['recipient'])}: {r['kind']} via {r['plugin']} -> {r['destination']}")
        for key, value in r.items():
            if key in _HEAD:
                continue
            if isinstance(value, list):
                click.echo(f"  {key}:")
                for item in value:
                    click.echo(f"    {item}")
            else:
                click.echo(f"  {key}: {value}")
