"""Bounces: an RFC 3464 report per message and attempt, parsed back with Python's email package;
never to the null sender, never about a report; delay warnings; stored with the attempt atomically."""

from __future__ import annotations

import asyncio
import email
import email.policy
from email.utils import parseaddr, parsedate_to_datetime
from pathlib import Path

import pytest

from mailpipe.core.clock import ManualClock
from mailpipe.core.errors import Reply
from mailpipe.core.message import Decision, Outcome, RecipientResult
from mailpipe.core.queue import QueueError
from tests.peers.sink import RecordingSink
from tests.retry.helpers import (
    HOSTNAME,
    open_gateway,
    queue_message,
    reports,
    send_via_intake,
    states,
    write_config,
)

T0 = 1_900_000_000.0
M, H = 60.0, 3600.0


@pytest.fixture
def sink():
    with RecordingSink("127.0.0.1") as s:
        yield s


def test_bounce_parsed_back_shows_every_field_a_mail_client_displays(workdir: Path, sink: RecordingSink,
                                                                      ) -> None:
    """Two recipients refused (550 5.1.1, 552 5.2.2), one delivered: one report, through the real intake."""
    config = write_config(workdir, sink, retry={"every": "15m", "expire_after": "2d"})
    sink.behaviour.rcpt["bob@example.net"] = "550 5.1.1 <bob@example.net>: user unknown"
    sink.behaviour.rcpt["dave@example.net"] = "552 5.2.2 mailbox full"

    async def scenario() -> None:
        clock = ManualClock(T0)
        gw = await open_gateway(config, clock)
        await gw.intake.start()
        try:
            await send_via_intake(gw, "alice@example.org",
                                  ["bob@example.net", "carol@example.net", "dave@example.net"])
            await gw.scheduler.tick()
        finally:
            await gw.intake.stop()
            await gw.close()

    asyncio.run(scenario())
    original, dsn = sink.wait_for(2)
    assert original.rcpt_tos == ["carol@example.net"]
    assert dsn.mail_from in ("", "<>"), "report not from the null sender"
    assert dsn.rcpt_tos == ["alice@example.org"], "report not to the envelope sender"
    assert b"\r\n" in dsn.data and b"\n" not in dsn.data.replace(b"\r\n", b""), "line ends are not CRLF"

    msg = email.message_from_bytes(dsn.data, policy=email.policy.default)
    assert parseaddr(msg["From"])[1] == f"MAILER-DAEMON@{HOSTNAME}"
    assert msg["To"] == "alice@example.org"
    assert msg["Subject"] == "Undelivered Mail Returned to Sender"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["Message-ID"].endswith(f"@{HOSTNAME}>")
    assert msg["In-Reply-To"] == "<Quarterly.report@origin.test>"
    assert parsedate_to_datetime(msg["Date"]).timestamp() == T0
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    text, status, headers = msg.iter_parts()
    assert [p.get_content_type() for p in (text, status, headers)] == [
        "text/plain", "message/delivery-status", "text/rfc822-headers"]

    words = " ".join(text.get_content().split())
    assert "could not be delivered" in words and '"Quarterly report"' in words
    assert "<bob@example.net>: the message was refused because the address does not exist" in words
    assert "user unknown" in words and "mailbox is full" in words and "carol" not in words

    per_message, *per_rcpt = status.get_payload()
    assert per_message["Reporting-MTA"] == f"dns; {HOSTNAME}"
    assert parsedate_to_datetime(per_message["Arrival-Date"]).timestamp() == T0
    fields = {b["Final-Recipient"]: b for b in per_rcpt}
    assert set(fields) == {"rfc822; bob@example.net", "rfc822; dave@example.net"}
    bob = fields["rfc822; bob@example.net"]
    assert bob["Action"] == "failed"
    assert bob["Status"] == "5.1.1"
    assert bob["Remote-MTA"] == "dns; 127.0.0.1"
    assert bob["Diagnostic-Code"].startswith("smtp; 550 5.1.1") and "user unknown" in bob["Diagnostic-Code"]
    assert parsedate_to_datetime(bob["Last-Attempt-Date"]).timestamp() == T0
    assert fields["rfc822; dave@example.net"]["Status"] == "5.2.2"

    attached = headers.get_content()
    assert "Subject: Quarterly report" in attached and "Received: from" in attached
    assert "Hello." not in attached, "only the header of the original is returned"


def test_no_report_to_the_null_sender(workdir: Path, sink: RecordingSink) -> None:
    """A message from <> that fails permanently ends silently (with an event saying why)."""
    config = write_config(workdir, sink)
    sink.behaviour.rcpt["bob@example.net"] = "550 5.1.1 unknown"

    async def scenario() -> None:
        gw = await open_gateway(config, ManualClock(T0))
        try:
            msg = await queue_message(gw, "", ["bob@example.net"])
            assert await gw.scheduler.tick() == 1
            assert await states(gw, msg.id) == {"bob@example.net": "failed"}
            assert await gw.queue.list() == [] and await gw.queue.list(state="pending") == []
            [event] = await gw.queue.events(kind="dsn")
            assert event.kind == "dsn.suppressed" and "null sender" in event.text
        finally:
            await gw.close()

    asyncio.run(scenario())
    assert sink.messages == []


def test_no_bounce_of_a_bounce(workdir: Path, sink: RecordingSink) -> None:
    """The sender's own address is refused too: the report fails, and nothing reports on the report."""
    config = write_config(workdir, sink)
    sink.behaviour.rcpt["bob@example.net"] = "550 5.1.1 unknown"
    sink.behaviour.rcpt["alice@example.org"] = "550 5.1.1 no such sender mailbox"

    async def scenario() -> None:
        gw = await open_gateway(config, ManualClock(T0))
        try:
            msg = await queue_message(gw, "alice@example.org", ["bob@example.net"])
            assert await gw.scheduler.tick() == 2  # the message, then its report (which fails)
            assert await gw.scheduler.tick() == 0
            rows = await gw.queue.attempts()
            assert [(a.sender, a.recipient, a.action) for a in rows] == [
                ("alice@example.org", "bob@example.net", "bounced"),
                ("", "alice@example.org", "bounced"),  # failed for good; nobody is told
            ]
            report_id = rows[1].message_id
            assert report_id != msg.id
            detail = await gw.queue.get(report_id)
            assert detail is not None and detail.message.attributes["dsn"] is True
            kinds = [e.kind for e in await gw.queue.events(kind="dsn")]
            assert kinds == ["dsn.queued", "dsn.suppressed"]
        finally:
            await gw.close()

    asyncio.run(scenario())
    assert sink.messages == []


def test_one_delay_warning_then_the_bounce(workdir: Path, sink: RecordingSink) -> None:
    """retry.warn_after: one 'Delayed Mail' report once the message waited that long, then the bounce."""
    config = write_config(workdir, sink, retry={"every": "1h", "expire_after": "5h", "warn_after": "2h"})
    sink.behaviour.rcpt["bob@example.net"] = "451 4.4.1 no answer from host"

    async def scenario() -> None:
        clock = ManualClock(T0)
        gw = await open_gateway(config, clock)
        try:
            msg = await queue_message(gw, "alice@example.org", ["bob@example.net"])
            for hour in range(6):
                clock.set(T0 + hour * H)
                await gw.scheduler.tick()
            assert await states(gw, msg.id) == {"bob@example.net": "expired"}
            detail = await gw.queue.get(msg.id)
            assert detail is not None and detail.message.attributes["delay_warned"] == T0 + 2 * H
        finally:
            await gw.close()

    asyncio.run(scenario())
    warning, bounce = reports(sink)
    w = email.message_from_bytes(warning.data, policy=email.policy.default)
    assert w["Subject"] == "Delayed Mail (still being retried)"
    words = " ".join(w.get_body(("plain",)).get_content().split())
    assert "you do NOT need to send the message again" in words and "(2 hours)" in words
    [_, block] = list(w.iter_parts())[1].get_payload()
    assert block["Action"] == "delayed" and block["Status"] == "4.4.1"
    b = email.message_from_bytes(bounce.data, policy=email.policy.default)
    assert b["Subject"] == "Undelivered Mail Returned to Sender"
    [_, block] = list(b.iter_parts())[1].get_payload()
    assert block["Action"] == "failed"
    assert "given up" in " ".join(b.get_body(("plain",)).get_content().split())


def test_report_is_stored_in_the_same_transaction_as_the_attempt(workdir: Path, sink: RecordingSink) -> None:
    """If the report cannot be stored, the attempt is not recorded either: no lost bounce, no double."""
    config = write_config(workdir, sink)

    async def scenario() -> None:
        gw = await open_gateway(config, ManualClock(T0))
        try:
            msg = await queue_message(gw, "alice@example.org", ["bob@example.net"])
            other = await queue_message(gw, "x@example.org", ["y@example.net"])
            [claimed] = [m for m in await gw.queue.claim_due(T0, 10, "test", T0 + 60) if m.id == msg.id]
            result = RecipientResult("bob@example.net", Outcome.PERMANENT, Reply(550, "5.1.1", "unknown"))
            decisions = {"bob@example.net": Decision.bounce()}
            [(report, data)] = await gw.notices(claimed, [result], decisions, T0)
            report.id = other.id  # collides with a stored message: the insert fails
            with pytest.raises(QueueError):
                await gw.queue.record(claimed, [result], decisions, T0, new_messages=[(report, data)])
            assert await gw.queue.attempts(message=msg.id) == []
            assert (await states(gw, msg.id))["bob@example.net"] == "pending"
        finally:
            await gw.close()

    asyncio.run(scenario())
