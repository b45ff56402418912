"""The core's objects from the SQL backends' rows, by the rules both follow."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from mailpipe.core.message import Recipient, RecipientState
from mailpipe.core.queue import MessageRecord, MessageSummary


def message_record(row: tuple[Any, ...], recipients: Iterable[tuple[Any, ...]], now: float,
                   node: str = "") -> MessageRecord:
    """A ``MessageRecord`` for the transfer face from a message row and its recipient rows.

    ``row``: id, sender, created, size, client, mail_options, attributes, done_at, lease_owner,
    lease_until; each recipient: address, state, attempts, next_attempt, last_reply. Recipients
    claimed under a lease that is still there (its process is gone) are due again at ``now``.
    """
    mid, sender, created, size, client, mail_options, attributes, done_at, lease_owner, lease_until = row
    out = []
    for address, state, attempts, next_attempt, last_reply in recipients:
        if lease_owner is not None and state in ("pending", "deferred") and next_attempt == lease_until:
            next_attempt = min(next_attempt, now)  # claimed by a process that is gone: due again
        out.append(Recipient(address, RecipientState(state), attempts, next_attempt, last_reply))
    return MessageRecord(mid, sender, created, size, out, json.loads(client or "{}"), json.loads(mail_options or "[]"),
                         json.loads(attributes or "{}"), done_at, node)


def tally(summary: MessageSummary, state: str, count: int, next_attempt: float | None) -> None:
    """Add ``count`` recipients in ``state`` to a listed message (``QueueAdmin.list``); pending and
    deferred ones bring their earliest due time (``next_attempt``: the smallest of that group)."""
    summary.recipients[state] = count
    if state in ("pending", "deferred") and next_attempt is not None:
        summary.next_attempt = next_attempt if summary.next_attempt is None else min(summary.next_attempt, next_attempt)
