"""Cross-node wake-ups: LISTEN on a dedicated connection, and call ``wake`` when another node made mail due.

Every transaction that makes mail due (new mail, a report, a retry, a release, a takeover)
sends ``NOTIFY mailpipe_queue`` with its node's token; the listener of every other node
wakes its scheduler. The connection is probed when it has been quiet a while (a cut that
sends no reset is noticed too) and made again with backoff when it drops; after a
reconnection the scheduler is woken once, since notifications sent meanwhile are lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from mailpipe.core.tasks import cancel_and_wait

from .cluster import CHANNEL
from .database import Database, Unreachable, translate

log = logging.getLogger("mailpipe.queue.postgres")
PROBE_AFTER = 10.0  # seconds without a notification before the connection is probed
PROBE_TIMEOUT = 5.0
BACKOFF = (0.5, 10.0)  # first and longest wait between reconnection attempts


class Listener:
    """One LISTEN connection per node, started by ``PostgresQueue.subscribe``."""

    def __init__(self, db: Database, token: str, wake: Callable[[], None]) -> None:
        self.db = db
        self.token = token
        self.wake = wake
        self.listening = asyncio.Event()  # set while LISTEN is in force (tests wait for it)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin listening in the background."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="mailpipe-queue-listen")

    async def stop(self) -> None:
        """Stop listening and close the connection."""
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self) -> None:
        delay = BACKOFF[0]
        reconnected = False
        while True:
            try:
                await self._listen(reconnected)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure: reconnect after a pause
                if self.listening.is_set():
                    delay = BACKOFF[0]
                self.listening.clear()
                error = translate(exc, self.db.where)
                if isinstance(error, Unreachable):
                    self.db.mark_down(error)  # logged once per outage, whoever notices first
                else:
                    log.warning("queue notifications from %s failed (%s); listening again", self.db.where, error)
                reconnected = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF[1])

    async def _listen(self, reconnected: bool) -> None:
        conn = await self.db.connect()
        async with conn:
            await conn.execute(f"LISTEN {CHANNEL}")
            self.listening.set()
            if reconnected:
                self.db.mark_up()
                self.wake()  # whatever was announced while we were away
            while True:
                async for note in conn.notifies(timeout=PROBE_AFTER):
                    if note.payload != self.token:
                        self.wake()
                await asyncio.wait_for(conn.execute("SELECT 1"), PROBE_TIMEOUT)
