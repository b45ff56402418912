"""Background asyncio tasks: how a plugin or a queue backend stops one it started."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` and wait until it has ended (None, or a task already done: nothing to wait for).

    Called at shutdown by whoever started the task (a plugin's loop, a backend's upkeep or
    listener); the task's ``CancelledError`` ends here, and so does any cancellation of the
    caller that arrives while it waits.
    """
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
