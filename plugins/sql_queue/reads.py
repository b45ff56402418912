"""The read questions that the SQL backends answer alike, through their own read jobs.

A backend lists its read jobs in one ``ReadJobs`` (its SQL, each a job ``fn(conn, ...)``)
and gives ``_run`` (one job, one transaction). ``SqlAdminReads`` answers the admin face's
questions (show, list, events, log, stats) and ``SqlExport`` the transfer face's pages
(``pipeline queue migrate``). The changes (hold, retry, delete, imports), the event buffer
and bodies stay each backend's own: how they commit, and whom they wake, differ.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar

from mailpipe.core.events import Event
from mailpipe.core.queue import (
    Attempt,
    MessageDetail,
    MessageRecord,
    MessageSummary,
    QueueAdmin,
    QueueStats,
    QueueTransfer,
    TransferCounts,
)

if TYPE_CHECKING:
    from .claims import Claims


@dataclass(frozen=True)
class ReadJobs:
    """One backend's read jobs, each run by the backend's ``_run``.

    Admin face: ``get(conn, message_id)`` -> ``MessageDetail | None``; ``summaries(conn, state,
    limit)`` -> ``list[MessageSummary]``; ``select_events(conn, since, limit, kind, level)`` ->
    ``list[Event]``; ``attempts(conn, limit, filters)`` -> ``list[Attempt]``; ``stats(conn, since,
    now)`` -> ``QueueStats``. Transfer face: ``counts(conn)`` -> ``TransferCounts``;
    ``message_page(conn, after, limit, now)`` -> ``list[MessageRecord]``; ``attempt_page`` and
    ``event_page(conn, after, limit)`` -> rows keyed by row id; ``known(conn, ids)`` -> ids held.
    """

    get: Callable[..., Any]
    summaries: Callable[..., Any]
    select_events: Callable[..., Any]
    attempts: Callable[..., Any]
    stats: Callable[..., Any]
    counts: Callable[..., Any]
    message_page: Callable[..., Any]
    attempt_page: Callable[..., Any]
    event_page: Callable[..., Any]
    known: Callable[..., Any]


class SqlAdminReads(QueueAdmin):
    """``QueueAdmin``'s questions for a SQL backend (a mixin, listed before ``QueueBackend``).

    The backend sets ``READS`` and gives ``_run`` and ``_claims`` (the body loader of a shown
    message). On a queue that several nodes share, every answer covers all nodes.
    """

    READS: ClassVar[ReadJobs]

    if TYPE_CHECKING:
        _claims: Claims

        async def _run(self, job: Callable[[Any], Any]) -> Any: ...

    async def get(self, message_id: str) -> MessageDetail | None:
        """``pipeline queue show`` and the console: one message with recipients and attempts."""
        detail: MessageDetail | None = await self._run(partial(self.READS.get, message_id=message_id))
        if detail is not None:
            self._claims.with_loader(detail.message)
        return detail

    async def list(self, *, state: str | None = None, limit: int = 1000) -> list[MessageSummary]:
        """``pipeline queue list``: unfinished messages (or those with a recipient in ``state``), oldest first."""
        return await self._run(partial(self.READS.summaries, state=state, limit=limit))

    async def events(self, *, since: float | None = None, limit: int = 200, kind: str | None = None,
                     level: str | None = None) -> list[Event]:
        """``pipeline events`` and the console: the newest ``limit`` matching events, oldest first."""
        return await self._run(partial(self.READS.select_events, since=since, limit=limit, kind=kind, level=level))

    async def attempts(self, *, limit: int = 200, **filters: Any) -> list[Attempt]:
        """``pipeline log`` and the console: the message log, filtered."""
        return await self._run(partial(self.READS.attempts, limit=limit, filters=filters))

    async def stats(self, *, since: float, now: float) -> QueueStats:
        """``pipeline stats`` and metrics: outcomes since ``since`` and the queue as it is."""
        return await self._run(partial(self.READS.stats, since=since, now=now))


class SqlExport(QueueTransfer):
    """The transfer face's page questions for a SQL backend (a mixin), from ``READS``.

    The backend answers the rest of ``QueueTransfer`` itself (location, active owners, bodies,
    imports).
    """

    READS: ClassVar[ReadJobs]

    if TYPE_CHECKING:

        async def _run(self, job: Callable[[Any], Any]) -> Any: ...

    async def transfer_counts(self) -> TransferCounts:
        """What the store holds (messages, recipients by state, log lines, bodies)."""
        return await self._run(self.READS.counts)

    async def messages_after(self, after: str, limit: int, now: float) -> list[MessageRecord]:
        """A page of messages in id order, with recipients, without bodies (one job)."""
        return await self._run(partial(self.READS.message_page, after=after, limit=limit, now=now))

    async def attempts_after(self, after: int, limit: int) -> list[tuple[int, Attempt]]:
        """A page of the message log, keyed by row id."""
        return await self._run(partial(self.READS.attempt_page, after=after, limit=limit))

    async def events_after(self, after: int, limit: int) -> list[tuple[int, Event]]:
        """A page of the event log, keyed by row id."""
        return await self._run(partial(self.READS.event_page, after=after, limit=limit))

    async def known_messages(self, ids: list[str]) -> set[str]:
        """Those of ``ids`` the store holds."""
        return await self._run(partial(self.READS.known, ids=list(ids)))
