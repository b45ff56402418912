"""``pipeline check``: validate the configuration and print the resolved chain, hook by hook.

Builds the chain's plugin instances (their constructors see the options) but opens no queue,
runs no ``startup`` and binds nothing.
"""

from __future__ import annotations

import click

from .options import config_option, json_option, load
from .output import echo_json


@click.command()
@config_option
@json_option
@click.pass_context
def check(ctx: click.Context, as_json: bool) -> None:
    """Validate the configuration and print the resolved chain, hook by hook."""
    config = load(ctx)
    from ..runtime import build_runtime, make_context

    runtime, _ = build_runtime(config, make_context(config))
    order = runtime.chain.order()
    warnings = [f"{p.instance_name}: {text}" for p in runtime.plugins for text in p.config_warnings()]
    if as_json:
        echo_json({"config": config.source, "queue": config.queue.name,
                   "chain": [p.name for p in config.chain], "hooks": order, "warnings": warnings})
        return
    for text in warnings:
        click.echo(f"warning: {text}", err=True)
    click.echo(f"configuration {config.source}: OK")
    click.echo(f"hostname: {config.settings.hostname}")
    click.echo(f"listen: {', '.join(s.address for s in config.settings.listen)}")
    click.echo(f"queue: {config.queue.name}")
    click.echo("chain (in order): " + (" -> ".join(p.name for p in config.chain) or "(empty)"))
    for hook, names in order.items():
        if names:
            click.echo(f"  {hook:14} {' -> '.join(names)}")
