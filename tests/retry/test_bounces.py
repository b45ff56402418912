"""Bounces: an RFC 3464 report per message and attempt, parsed back with Python's email package;
never to the null sender, never about a report; delay warnings.

(That a report is stored in the same transaction as its attempt is a queue promise:
tests/queue/test_sqlite_promises.py.)"""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections.abc import Iterator
from email.utils import parseaddr, parsedate_to_datetime
from pathlib import Path

import pytest

from tests.peers.harness import Harness, simple_message
from tests.peers.sink import RecordingSink
from tests.retry.helpers import HOSTNAME, reports, retry_config, send_via_intake

T0 = 1_900_000_000.0
M, H = 60.0, 3600.0


@pytest.fixture
def sink() -> Iterator[RecordingSink]:
    with RecordingSink("127.0.0.1") as s:
        yield s


def test_bounce_parsed_back_shows_every_field_a_mail_client_displays(workdir: Path, sink: RecordingSink,
                                                                      ) -> None:
    """Two recipients refused (550 5.1.1, 552 5.2.2), one delivered: one report, through the real intake."""
    config = retry_config(workdir, sink, retry={"every": "15m", "expire_after": "2d"})
    sink.behaviour.rcpt["bob@example.net"] = "550 5.1.1 <bob@example.net>: user unknown"
    sink.behaviour.rcpt["dave@example.net"] = "552 5.2.2 mailbox full"
    to = ["bob@example.net", "carol@example.net", "dave@example.net"]
    sent = simple_message("alice@example.org", to)
    message_id = email.message_from_bytes(sent)["Message-ID"]

    async def scenario() -> None:
        async with Harness(workdir, config, start=T0, listen=True) as h:
            await send_via_intake(h, "alice@example.org", to, sent)
            assert await h.tick() == 2  # the message, then the report it produced

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
    assert msg["In-Reply-To"] == message_id
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
    config = retry_config(workdir, sink)
    sink.behaviour.rcpt["bob@example.net"] = "550 5.1.1 unknown"

    async def scenario() -> None:
        async with Harness(workdir, config, start=T0) as h:
            mid = await h.submit("", ["bob@example.net"])
            assert await h.tick() == 1
            assert await h.states(mid) == {"bob@example.net": "failed"}
            assert await h.queued() == [] and await h.queued("pending") == []
            [event] = await h.events("dsn")
            assert event.kind == "dsn.suppressed" and "null sender" in event.text

    asyncio.run(scenario())
    assert sink.messages == []


def test_no_bounce_of_a_bounce(workdir: Path, sink: RecordingSink) -> None:
    """The sender's own address is refused too: the report fails, and nothing reports on the report."""
    config = retry_config(workdir, sink)
    sink.behaviour.rcpt["bob@example.net"] = "550 5.1.1 unknown"
    sink.behaviour.rcpt["alice@example.org"] = "550 5.1.1 no such sender mailbox"

    async def scenario() -> None:
        async with Harness(workdir, config, start=T0) as h:
            mid = await h.submit("alice@example.org", ["bob@example.net"])
            assert await h.tick() == 2  # the message, then its report (which fails)
            assert await h.tick() == 0
            rows = await h.attempts()
            assert [(a.sender, a.recipient, a.action, a.code, a.enhanced) for a in rows] == [
                ("alice@example.org", "bob@example.net", "bounced", 550, "5.1.1"),
                ("", "alice@example.org", "bounced", 550, "5.1.1"),  # failed for good; nobody is told
            ]
            report_id = rows[1].message_id
            assert report_id != mid
            assert (await h.attributes(report_id))["dsn"] is True
            kinds = [e.kind for e in await h.events("dsn")]
            assert kinds == ["dsn.queued", "dsn.suppressed"]

    asyncio.run(scenario())
    assert sink.messages == []


def test_one_delay_warning_then_the_bounce(workdir: Path, sink: RecordingSink) -> None:
    """retry.warn_after: one 'Delayed Mail' report once the message waited that long, then the bounce."""
    config = retry_config(workdir, sink, retry={"every": "1h", "expire_after": "5h", "warn_after": "2h"})
    sink.behaviour.rcpt["bob@example.net"] = "451 4.4.1 no answer from host"

    async def scenario() -> None:
        async with Harness(workdir, config, start=T0) as h:
            mid = await h.submit("alice@example.org", ["bob@example.net"])
            for hour in range(6):
                h.clock.set(T0 + hour * H)
                await h.tick()
            assert await h.states(mid) == {"bob@example.net": "expired"}
            assert (await h.attributes(mid))["delay_warned"] == T0 + 2 * H

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
