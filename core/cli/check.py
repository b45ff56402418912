"""``pipeline check``: validate the configuration, warn about what cannot deliver, print the chain per hook.

Builds the chain's plugin instances (their constructors see the options) but opens no queue,
runs no ``startup`` and binds nothing. ``pipeline serve`` loads the configuration the same
way (every file it names is checked then) and logs the same warnings.
"""

from __future__ import annotations

from typing import Any

import click

from .options import config_option, json_option, load, report
from .output import echo_json
from .runner import run
from .survey import examine


@click.command()
@config_option
@json_option
@click.pass_context
def check(ctx: click.Context, as_json: bool) -> None:
    """Validate the configuration, warn about mail it cannot deliver, print the resolved chain hook by hook."""
    config = load(ctx)
    order, found, location = run(examine(config))
    if as_json:
        data: dict[str, Any] = {"config": config.source, "queue": config.queue.name, "queue_location": location,
                                "chain": [p.name for p in config.chain], "hooks": order, "warnings": found}
        echo_json(data)
        return
    for text in found:
        report("warning", text)
    note = f" ({len(found)} warning(s))" if found else ""
    click.echo(f"configuration {config.source}: OK{note}")
    click.echo(f"hostname: {config.settings.hostname}")
    click.echo(f"listen: {', '.join(s.address for s in config.settings.listen)}")
    click.echo(f"queue: {config.queue.name} ({location})")
    click.echo("chain (in order): " + (" -> ".join(p.name for p in config.chain) or "(empty)"))
    for hook, names in order.items():
        if names:
            click.echo(f"  {hook:14} {' -> '.join(names)}")
