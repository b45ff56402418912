"""``pipeline serve``: run the gateway in the foreground until SIGTERM or SIGINT.

The configuration is loaded and validated exactly as ``pipeline check`` does (every file it
names is checked), its warnings are logged, and the log is set up from ``log:`` before
anything starts. A refused configuration, a busy address or an unusable queue ends the
command with ``error: ...`` lines (exit 2 or 1), never a traceback.

``workers: auto | N`` (or ``--workers``) sets how many processes serve: with one, this
process is the gateway; with more, it is their supervisor (``core/workers``) and starts each
worker as ``pipeline serve -c FILE --worker I/N@PID --link-fds TELL,HEAR`` (options for the
supervisor only, hidden from ``--help``). docs/workers.md tells the whole story.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .options import config_option, config_path, load, report
from .runner import run

if TYPE_CHECKING:
    from ..config import LoadedConfig


@click.command()
@config_option
@click.option("--workers", "workers_opt", metavar="N|auto",
              help="processes that accept and deliver mail: auto (one per core) or a number "
                   "[default: the workers key, auto]")
@click.option("--worker", "worker_arg", hidden=True, help="(set by the supervisor) this worker's INDEX/COUNT@PID")
@click.option("--link-fds", hidden=True, help="(set by the supervisor) the start-up pipes TELL,HEAR")
@click.pass_context
def serve(ctx: click.Context, workers_opt: str | None, worker_arg: str | None, link_fds: str | None) -> None:
    """Accept mail on the listeners and deliver it, until SIGTERM or SIGINT."""
    from ..settings import worker_count

    config = load(ctx)
    from ..logs import setup

    setup(config.settings.log.level, config.settings.log.format)
    if worker_arg is not None:
        _serve_worker(ctx, config, worker_arg, link_fds)
        return
    try:
        count = worker_count(workers_opt if workers_opt is not None else config.settings.workers)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--workers") from None
    if count == 1:
        _serve_alone(ctx, config)
    else:
        _supervise(ctx, config, count)


def _serve_alone(ctx: click.Context, config: LoadedConfig) -> None:
    """One process: this one is the gateway."""
    import logging

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

    _starting(ctx, config, lambda: run(serve_config(), fast_loop=True))


def _supervise(ctx: click.Context, config: LoadedConfig, count: int) -> None:
    """Several processes: this one starts and watches them (``core/workers/supervisor.py``)."""
    import logging

    from ..workers.supervisor import Supervisor
    from .survey import examine

    path = config_path(ctx)
    command = [*_pipeline_command(), "serve", *(["-c", path] if path else [])]

    async def supervise() -> int:
        _, warnings, _ = await examine(config)

        def started() -> None:
            for text in warnings:
                logging.getLogger("mailpipe.serve").warning("%s", text)

        return await Supervisor(config, count, command, on_started=started).run()

    status = _starting(ctx, config, lambda: run(supervise()))
    if status:
        ctx.exit(status)


def _serve_worker(ctx: click.Context, config: LoadedConfig, argument: str, link_fds: str | None) -> None:
    """One worker under a supervisor: the gateway, listening when the supervisor says so."""
    from ..gateway import Gateway
    from ..workers.affinity import pin
    from ..workers.link import StartLink, end_with_supervisor
    from ..workers.slot import WorkerSlot, assume

    try:
        slot = WorkerSlot.parse(argument)
        link = StartLink.parse(link_fds) if link_fds else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--worker") from None
    end_with_supervisor(slot)
    assume(slot)
    if config.settings.pin_workers:
        pin(slot)

    class Working(Gateway):
        """The gateway as one worker: listens once every worker is prepared; a restarted one says why it was."""

        async def before_listening(self) -> None:
            if link is not None:
                await link.prepared(self.stopping)

        async def start(self) -> None:
            await super().start()
            if link is not None:
                link.ready()
            why = os.environ.get("MAILPIPE_WORKER_RESTARTED")
            if why:
                self.events.emit("worker.restarted", f"{self.worker} started again: {why}", level="warning",
                                 worker=self.worker.index)

    _starting(ctx, config, lambda: run(Working(config, worker=slot).run(), fast_loop=True))


def _starting(ctx: click.Context, config: LoadedConfig, start: Callable[[], int | None]) -> int | None:
    """Run ``start()``; an OSError (the state folder cannot be made, a file went away) is one error line, exit 1."""
    try:
        return start()
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        report("error", f"{config.source}: cannot start: {where}{exc.strerror or exc}")
        ctx.exit(1)
    return None


def _pipeline_command() -> list[str]:
    """How to run ``pipeline`` again (for the workers): this very script, with this very Python."""
    script = Path(sys.argv[0])
    if script.name != "-c" and script.is_file() and script.suffix != ".py":
        return [sys.executable, str(script.resolve())]
    return [sys.executable, "-c", "from mailpipe.core.cli import main; main(prog_name='pipeline')"]
