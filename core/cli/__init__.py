"""The ``pipeline`` command.

Every command takes ``-c/--config FILE`` before or after the command name;
without it the embedded default is used. Commands that print data take
``--json``. Exit status: 0 done, 1 failed, 2 bad usage or bad configuration.

The package: ``options`` (``-c``, ``--json``, loading the configuration), ``output``
(JSON, timestamps) and ``runner`` (the event loop, opening only the queue) are shared;
each command lives in a module of its own and imports only those; this module builds
the ``pipeline`` group and registers the commands. Heavy imports (the gateway, aiosmtpd,
pydantic models, uvloop) happen inside the commands that need them, so ``pipeline
--help`` stays quick.
"""

from __future__ import annotations

import click

from .check import check
from .logs import COMMANDS as LOG_COMMANDS
from .options import config_option
from .passwords import hash_password
from .plugins import plugins
from .queue import queue
from .route import route
from .rules import rules
from .serve import serve

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@config_option
def main() -> None:
    """mailpipe: a plugin-based outbound mail gateway."""


for _command in (serve, check, plugins, hash_password, route, rules, queue, *LOG_COMMANDS):
    main.add_command(_command)
