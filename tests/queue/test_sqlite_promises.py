"""Promises of the queue interface (core/queue.py), checked on the SQLite backend through that interface only.

Written against ``QueueBackend`` so that another backend can run the same
tests: the ``backend`` fixture is the one place that names SQLite.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailpipe.core.errors import Reply
from mailpipe.core.message import Decision, Message, Outcome, Recipient, RecipientResult
from mailpipe.core.queue import QueueBackend, QueueError
from mailpipe.plugins.sqlite_queue import SqliteQueue

T0 = 1_900_000_000.0
OWNER = "test-host:1:promises"


def message(message_id: str, sender: str, recipients: list[str], **attributes: object) -> tuple[Message, bytes]:
    data = (f"From: {sender or 'MAILER-DAEMON@gw.test'}\r\nTo: {', '.join(recipients)}\r\n"
            f"Subject: {message_id}\r\n\r\nHello.\r\n").encode()
    return Message(message_id, sender, [Recipient(r) for r in recipients], T0, size=len(data),
                   attributes=dict(attributes)), data


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture
def backend(tmp_path: Path, loop: asyncio.AbstractEventLoop) -> Iterator[QueueBackend]:
    """An open queue backend in a fresh folder (SQLite here); closed at the end."""
    queue = SqliteQueue(tmp_path / "queue.sqlite3")
    loop.run_until_complete(queue.open())
    yield queue
    loop.run_until_complete(queue.close())


def test_report_is_stored_in_the_same_transaction_as_the_attempt(
        backend: QueueBackend, loop: asyncio.AbstractEventLoop) -> None:
    """If the report cannot be stored, the attempt is not recorded either: no lost bounce, no double.

    Then the same attempt recorded with a storable report keeps both: the recipient
    failed once, one report queued.
    """
    run = loop.run_until_complete
    original, data = message("MSG-ORIGINAL", "alice@example.org", ["bob@example.net"])
    other, other_data = message("MSG-OTHER", "x@example.org", ["y@example.net"])
    run(backend.store(original, data))
    run(backend.store(other, other_data))
    [claimed] = [m for m in run(backend.claim_due(T0, 10, OWNER, T0 + 60)) if m.id == original.id]
    result = RecipientResult("bob@example.net", Outcome.PERMANENT, Reply(550, "5.1.1", "user unknown"))
    decisions = {"bob@example.net": Decision.bounce()}
    colliding, report_data = message(other.id, "", ["alice@example.org"], dsn=True)  # the id is taken

    with pytest.raises(QueueError):
        run(backend.record(claimed, [result], decisions, T0, new_messages=[(colliding, report_data)]))
    assert run(backend.attempts(message=original.id)) == []
    detail = run(backend.get(original.id))
    assert detail is not None
    assert [(r.address, r.state.value) for r in detail.message.recipients] == [("bob@example.net", "pending")]
    assert run(backend.get(other.id)).message.sender == "x@example.org"  # type: ignore[union-attr]

    report, report_data = message("MSG-REPORT", "", ["alice@example.org"], dsn=True)
    run(backend.record(claimed, [result], decisions, T0, new_messages=[(report, report_data)]))
    [attempt] = run(backend.attempts(message=original.id))
    assert (attempt.recipient, attempt.code, attempt.enhanced, attempt.action) == (
        "bob@example.net", 550, "5.1.1", "bounced")
    stored = run(backend.get(report.id))
    assert stored is not None and stored.message.attributes == {"dsn": True}
    assert [(r.address, r.state.value) for r in stored.message.recipients] == [("alice@example.org", "pending")]
    assert run(backend.read_body(report.id)) == report_data
