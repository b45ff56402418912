"""Running a command's coroutine, and opening only the queue for the commands that read or change it.

Errors that mean "cannot do this" end the command with ``error: ...`` on standard error:
a ``ConfigError`` with exit status 2, a ``QueueError`` (missing, corrupt, locked, newer
version) with 1.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

import click

from .options import config_path, report

if TYPE_CHECKING:
    from ..adminqueue import AdminQueue

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T], *, fast_loop: bool = False) -> T:
    """Run ``coro`` to its end in a new event loop; ``fast_loop`` uses uvloop when installed (``serve``)."""
    import asyncio

    from ..errors import ConfigError
    from ..queue import QueueError

    loop_factory = None
    if fast_loop:
        try:
            import uvloop

            loop_factory = uvloop.new_event_loop
        except ImportError:
            pass
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(coro)
    except (ConfigError, QueueError) as exc:
        report("error", str(exc))
        sys.exit(2 if isinstance(exc, ConfigError) else 1)


def with_queue(ctx: click.Context, action: Callable[[AdminQueue], Awaitable[T]]) -> T:
    """Open the configuration's queue alone (``adminqueue``: no chain plugin is built, a missing queue is
    refused, not created), run ``action`` on it, close it."""

    async def body() -> T:
        from ..adminqueue import open_admin_queue

        target = await open_admin_queue(config_path(ctx))
        try:
            return await action(target)
        finally:
            await target.queue.close()

    return run(body())
