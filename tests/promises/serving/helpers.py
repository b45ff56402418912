"""Helpers for the black-box tests: talk to a running ``pipeline serve`` only through SMTP and the CLI."""

from __future__ import annotations

import email.policy
import smtplib
import time
from email.message import EmailMessage
from typing import Any

from tests.peers.mailpipe import MailpipeProcess
from tests.peers.net import wait_until

SMTP_TIMEOUT = 30


def make_message(subject: str, sender: str = "alice@example.org", to: str = "bob@example.net") -> bytes:
    """A small RFC 5322 message with CRLF line ends and a unique Message-ID."""
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{time.monotonic_ns()}.{subject.replace(' ', '.')}@client.test>"
    msg.set_content("Hello.\n")
    return msg.as_bytes()


def queue_id_of(reply: bytes | str) -> str:
    """The queue ID from the intake's ``250 2.0.0 Ok: queued as ID``."""
    text = reply.decode() if isinstance(reply, bytes) else reply
    assert text.startswith("2.0.0 Ok: queued as "), text
    return text.rsplit(" ", 1)[-1]


def submit(gw: MailpipeProcess, recipients: list[str], subject: str, sender: str = "alice@example.org") -> str:
    """Send one message to the gateway's first listener with smtplib; return its queue ID."""
    host, port = gw.address
    with smtplib.SMTP(host, port, timeout=SMTP_TIMEOUT) as client:
        client.ehlo("client.test")
        client.mail(sender)
        for r in recipients:
            code, text = client.rcpt(r)
            assert code == 250, (r, code, text)
        code, text = client.data(make_message(subject, sender, recipients[0]))
    assert code == 250, (code, text)
    return queue_id_of(text)


def show(gw: MailpipeProcess, queue_id: str) -> dict[str, Any]:
    """``pipeline queue show ID --json``."""
    return gw.cli_json("queue", "show", queue_id)


def states(gw: MailpipeProcess, queue_id: str) -> dict[str, str]:
    """Recipient address -> state, from ``pipeline queue show``."""
    return {r["address"]: r["state"] for r in show(gw, queue_id)["recipients"]}


_OUTCOME_EVENTS = {"delivered": "message.delivered", "deferred": "message.deferred", "failed": "message.bounced"}


def wait_states(gw: MailpipeProcess, queue_id: str, expected: dict[str, str], timeout: float = 30) -> dict[str, Any]:
    """Wait (bounded) until the recipients of ``queue_id`` are in ``expected``; return ``queue show``.

    It first watches the serve log (cheap) for the outcome line of each recipient, which the
    gateway writes after the outcome is committed, then confirms with ``queue show``.
    """
    needles = [f"{_OUTCOME_EVENTS[s]}: {queue_id}: <{r}>" for r, s in expected.items() if s in _OUTCOME_EVENTS]
    details = lambda: f"{show(gw, queue_id)}\n{gw.log_text()[-3000:]}"  # noqa: E731
    wait_until(lambda: all(n in gw.log_text() for n in needles), timeout,
               f"{queue_id} recipients {expected} in the serve log", details)
    wait_until(lambda: states(gw, queue_id) == expected, timeout, f"{queue_id} recipients {expected}", details)
    return show(gw, queue_id)


def wait_log(gw: MailpipeProcess, text: str, timeout: float = 30) -> None:
    """Wait (bounded) until the serve log contains ``text``."""
    wait_until(lambda: text in gw.log_text(), timeout, f"{text!r} in the serve log", lambda: gw.log_text()[-3000:])


def events(gw: MailpipeProcess, kind: str) -> list[dict[str, Any]]:
    """``pipeline events --kind KIND --json``, oldest first."""
    rows = gw.cli_json("events", "--kind", kind)
    return sorted(rows, key=lambda e: e["time"])
