"""The ``pipeline`` command.

Every command takes ``-c/--config FILE`` before or after the command name;
without it the embedded default is used. Commands that print data take
``--json``. Exit status: 0 done, 1 failed (an unknown message ID, a queue that does
not exist or cannot be opened), 2 bad usage or bad configuration.

The package: ``options`` (``-c``, ``--json``, loading the configuration, ``error:`` lines),
``output`` (JSON, timestamps), ``runner`` (the event loop, opening only the queue) and
``survey`` (building the chain without running it, its warnings) are shared;
each command lives in a module of its own and imports only those; this module builds
the ``pipeline`` group and registers the commands. Heavy imports (the gateway, aiosmtpd,
pydantic models, uvloop) happen inside the commands that need them, so ``pipeline
--help`` and ``--version`` stay quick; the queue and log commands open the queue without
pydantic when they can (``core/adminqueue.py``).
"""

from __future__ import annotations

import click

from .auth import auth
from .check import check
from .collect import collect
from .dkim import dkim
from .logs import COMMANDS as LOG_COMMANDS
from .migrate import migrate
from .options import config_option
from .passwords import hash_password
from .plugins import plugins
from .queue import queue
from .route import route
from .rules import rules
from .serve import serve
from .showconfig import show_config

__all__ = ["main"]


def _version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        from ..about import version

        click.echo(f"mailpipe {version()}")
        ctx.exit()


@click.group(context_settings={"help_option_names": ["-h", "--help"]},
             epilog="Exit status: 0 done, 1 failed (an unknown message ID, no queue there), "
                    "2 bad usage or bad configuration.")
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_version,
              help="Show the version and exit.")
@config_option
def main() -> None:
    """mailpipe: a plugin-based outbound mail gateway."""


queue.add_command(migrate)
for _command in (serve, check, show_config, plugins, hash_password, route, rules, queue, collect, *LOG_COMMANDS):
    main.add_command(_command)
main.add_command(auth)
main.add_command(dkim)
