"""Running a command's coroutine, and opening only the queue for the commands that read or change it.

Errors that mean "cannot do this" end the command with ``error: ...`` on standard error:
a ``ConfigError`` with exit status 2, a ``QueueError`` (corrupt, locked, newer version) with 1.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from ..config import LoadedConfig
    from ..queue import QueueBackend

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
        click.echo(f"error: {exc}", err=True)
        sys.exit(2 if isinstance(exc, ConfigError) else 1)


def with_queue(config: LoadedConfig, action: Callable[[QueueBackend], Awaitable[T]]) -> T:
    """Open the configuration's queue backend alone (no chain plugin is built), run ``action`` on it, close it."""

    async def body() -> T:
        from ..runtime import open_queue

        queue = await open_queue(config)
        try:
            return await action(queue)
        finally:
            await queue.close()

    return run(body())
