"""``pipeline serve``: run the gateway in the foreground until SIGTERM or SIGINT.

The configuration is loaded and validated exactly as ``pipeline check`` does (every file it
names is checked), its warnings are logged, and the log is set up from ``log:`` before
anything starts. A refused configuration, a busy address or an unusable queue ends the
command with ``error: ...`` lines (exit 2 or 1), never a traceback.
"""

from __future__ import annotations

import click

from .options import config_option, load, report
from .runner import run


@click.command()
@config_option
@click.pass_context
def serve(ctx: click.Context) -> None:
    """Accept mail on the listeners and deliver it, until SIGTERM or SIGINT."""
    config = load(ctx)
    import logging

    from ..logs import setup

    setup(config.settings.log.level, config.settings.log.format)
    from ..gateway import Gateway
    from .survey import examine

    class Serving(Gateway):
        """The gateway, logging what ``check`` would warn about once it has started."""

        warnings: list[str] = []

        async def start(self) -> None:
            await super().start()
            for text in self.warnings:
                logging.getLogger("mailpipe.serve").warning("%s", text)

    async def serve_config() -> None:
        _, Serving.warnings, _ = await examine(config)
        await Serving(config).run()

    try:
        run(serve_config(), fast_loop=True)
    except OSError as exc:  # the state folder cannot be made, a file went away: say so, no traceback
        where = f"{exc.filename}: " if exc.filename else ""
        report("error", f"{config.source}: cannot start: {where}{exc.strerror or exc}")
        ctx.exit(1)
