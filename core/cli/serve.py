"""``pipeline serve``: run the gateway in the foreground until SIGTERM or SIGINT."""

from __future__ import annotations

import logging
import sys

import click

from .options import config_option, load
from .runner import run


@click.command()
@config_option
@click.pass_context
def serve(ctx: click.Context) -> None:
    """Accept mail on the listeners and deliver it, until SIGTERM or SIGINT."""
    config = load(ctx)
    logging.basicConfig(
        level=config.settings.log.level.upper(), stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd's per-command chatter
    from ..gateway import Gateway

    gateway = Gateway(config)
    run(gateway.run(), fast_loop=True)
