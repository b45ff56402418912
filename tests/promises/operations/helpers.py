"""Helpers for the black-box promise tests: hand mail to a running ``pipeline serve`` and read what it did.

Everything here talks to the gateway from outside: SMTP to its intake, its serve log, the
``pipeline`` CLI with ``--json`` and ``/metrics`` over HTTP. Only ``write_history`` runs the gateway
in process, on the Harness's manual clock, to leave a queue with history at chosen past times.
"""

from __future__ import annotations

import re
import smtplib
import time
from pathlib import Path
from typing import Any

import httpx

from tests.peers.harness import SyncHarness
from tests.peers.mailpipe import MailpipeProcess
from tests.peers.net import free_port, wait_until

SENDER = "alice@origin.test"
_QUEUED = re.compile(r"queued as (\S+)")


def message_bytes(sender: str, recipients: list[str], subject: str) -> bytes:
    """A small RFC 5322 message with CRLF line ends and a unique Message-ID."""
    return (f"From: {sender or 'nobody@origin.test'}\r\nTo: {', '.join(recipients)}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{time.monotonic_ns()}@origin.test>\r\n\r\nHello.\r\n").encode()


def submit(gw: MailpipeProcess, recipients: list[str], *, sender: str = SENDER, subject: str = "promise") -> str:
    """Hand one message to the gateway's intake over SMTP; its queue id (from the 250 reply)."""
    host, port = gw.address
    with smtplib.SMTP(host, port, timeout=10) as client:
        client.ehlo("client.test")
        code, text = client.mail(sender)
        assert code == 250, (code, text)
        for rcpt in recipients:
            code, text = client.rcpt(rcpt)
            assert code == 250, (rcpt, code, text)
        code, text = client.data(message_bytes(sender, recipients, subject))
    assert code == 250, (code, text)
    found = _QUEUED.search(text.decode())
    assert found, text
    return found.group(1)


def wait_outcome(gw: MailpipeProcess, message_id: str, recipient: str, timeout: float = 20.0) -> None:
    """Wait until the serve log has the outcome event (``message.*``) of one recipient of one message."""
    marker = f"{message_id}: <{recipient}>"
    wait_until(lambda: marker in gw.log_text(), timeout, f"an outcome for {marker}", gw.log_text)


def attempts(gw: MailpipeProcess, message_id: str) -> list[dict[str, Any]]:
    """``pipeline log -m ID --json``: the message log of one message."""
    return gw.cli_json("log", "-m", message_id)


def reply_of(row: dict[str, Any]) -> tuple[str, str, int, str, str]:
    """(recipient, action, code, enhanced, text) of one message-log row."""
    return row["recipient"], row["action"], row["code"], row["enhanced"], row["text"]


def scrape(url: str) -> str:
    """The Prometheus text of ``/metrics``."""
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200, response.text
    return response.text


def sample(text: str, name: str, labels: dict[str, str] | None = None) -> float | None:
    """The value of one sample of the Prometheus text (labels in any order); None when absent."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.fullmatch(r"([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)", line)
        if not m or m.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        if found == (labels or {}):
            return float(m.group(3))
    return None


def write_history(workdir: Path, state_dir: Path, sink_port: int,
                  plan: list[tuple[float, list[str]]], **harness_config: Any) -> list[str]:
    """Make a past: with the Harness (manual clock) on the queue in ``state_dir``, queue and deliver one
    message per ``(unix time, recipients)`` of ``plan`` (in time order) through the smarthost ``sink_port``.

    Returns the queue ids. The queue is closed afterwards, ready for a ``pipeline serve`` on ``state_dir``.
    """
    config: dict[str, Any] = {
        "hostname": "gw.history.test", "state_dir": str(state_dir), "listen": [f"127.0.0.1:{free_port()}"],
        "chain": [{"smarthost": {"server": f"127.0.0.1:{sink_port}", "tls": "none"}},
                  {"retry": {"every": "15m", "expire_after": "2d"}}],
        **harness_config,
    }
    h = SyncHarness(workdir / "history", config, start=plan[0][0])
    try:
        mids = []
        for when, recipients in plan:
            h.clock.set(when)
            subject = f"history {len(mids)}"
            data = message_bytes(SENDER, recipients[:2], subject)  # a short To: even for many recipients
            mids.append(h.submit(SENDER, recipients, data=data, subject=subject))
            h.deliver()
        return mids
    finally:
        h.close()
