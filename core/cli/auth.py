"""``pipeline auth test``: make every login the configuration would make, once, and send nothing.

For each chain entry that logs in somewhere (the smarthost's ``auth``): fetch its OAuth2 token
(when it has ``oauth2``), connect, authenticate, QUIT, and report each step. No queue is
opened and no message is sent. Secrets and tokens are never printed, with or without
``--json``. Exit status: 0 when every login worked, 1 when one failed, 2 for a bad configuration.
"""

from __future__ import annotations

import click

from .options import config_option, json_option, load
from .output import echo_json
from .runner import run


@click.group()
@config_option
def auth() -> None:
    """Check the logins the configuration makes (smarthost AUTH, OAuth2 tokens, POP3)."""


@auth.command("test")
@config_option
@json_option
@click.pass_context
def test(ctx: click.Context, as_json: bool) -> None:
    """Fetch each login's token, log in, report; send nothing."""
    import logging

    config = load(ctx)
    from ..plugin import LoginCheck

    # The report below is the output: the events the logins raise are not printed a second time.
    logging.getLogger("mailpipe").addHandler(logging.NullHandler())
    from ..runtime import build_runtime, make_context

    runtime, _ = build_runtime(config, make_context(config))

    async def everything() -> list[tuple[str, LoginCheck]]:
        out: list[tuple[str, LoginCheck]] = []
        for plugin in runtime.plugins:
            out += [(plugin.instance_name, check) for check in await plugin.test_logins()]
        return out

    results = run(everything())
    if as_json:
        echo_json([{"plugin": name, "login": c.login, "ok": c.ok, "steps": c.steps} for name, c in results])
    elif not results:
        click.echo("no chain entry makes a login")
    for name, c in results if not as_json else []:
        click.echo(f"{name}: {c.login}: {'OK' if c.ok else 'FAILED'}")
        for step in c.steps:
            click.echo(f"  {step}")
    if any(not c.ok for _, c in results):
        ctx.exit(1)
