"""A rejected smarthost login: the mail stays queued, one clear event, the password nowhere.

Runs ``pipeline serve`` as a subprocess against the real Postfix/Dovecot ISP
with a wrong password, sends a burst of messages with smtplib, then reads
everything an administrator could read: the serve log, ``queue show --json``,
``log --json``, ``events --json``, ``route``, and the bytes of every file in
the state folder (SQLite database and WAL).
"""

from __future__ import annotations

import base64
import json
import smtplib
from collections.abc import Callable
from pathlib import Path

from tests.peers.certs import TestPKI
from tests.peers.mailpipe import MailpipeProcess
from tests.peers.net import wait_until
from tests.peers.postfix import PostfixPeer

from .helpers import make_message

WRONG = "Wr0ng-Pa55word-xyzzy"


def forms_of(secret: str, user: str) -> list[bytes]:
    """The password as text and in the base64 forms that AUTH PLAIN/LOGIN put on the wire."""
    return [secret.encode(), base64.b64encode(secret.encode()),
            base64.b64encode(f"\0{user}\0{secret}".encode())]


def test_wrong_password_keeps_mail_queued_with_one_event(
        mailpipe_factory: Callable[..., MailpipeProcess], postfix_isp: PostfixPeer, pki: TestPKI, workdir: Path,
) -> None:
    """A wrong smarthost password: mail stays deferred (451 4.7.8), one error event, the password nowhere."""
    gw = mailpipe_factory({
        "hostname": "gw.test",
        "chain": [
            {"smarthost": {
                "server": postfix_isp.host, "port": postfix_isp.submission_port, "tls": "starttls",
                "ca_file": str(pki.ca_file),
                "auth": {"mode": "login", "mechanism": "plain", "username": "gateway",
                         "password": "${ISP_PASSWORD}"},
            }},
            {"retry": {"every": "10m"}},
        ],
    }, env={"ISP_PASSWORD": WRONG})
    with gw:
        host, port = gw.address
        with smtplib.SMTP(host, port, timeout=10) as client:
            for i in range(3):
                client.sendmail("alice@example.org", [f"r{i}@remote.test"],
                                make_message(f"burst {i}", "alice@example.org", f"r{i}@remote.test"))

        def all_deferred() -> bool:
            rows = gw.cli_json("queue", "list")
            return len(rows) == 3 and all(r["recipients"] == {"deferred": 1} for r in rows)

        wait_until(all_deferred, 30, "3 deferred messages", gw.log_text)
        first = gw.cli_json("queue", "list")[0]["id"]
        outputs = [gw.cli(*args, "--json").stdout for args in (
            ("queue", "show", first), ("log",), ("events",), ("route", "someone@remote.test"))]
    events = json.loads(outputs[2])
    failed = [e for e in events if e["kind"] == "smarthost.login_failed"]
    assert len(failed) == 1, events
    assert failed[0]["level"] == "error"
    text = failed[0]["text"]
    assert "smarthost login as gateway" in text and "535" in text and "configuration problem" in text
    assert "mail stays queued" in text
    # Only the first message really tried the login: the others were held back (no lock-out at the ISP).
    assert len([ln for ln in postfix_isp.log_text().splitlines() if "authentication failed" in ln]) == 1
    assert postfix_isp.sink.messages == []
    show = json.loads(outputs[1])
    assert {(a["code"], a["enhanced"]) for a in show} == {(451, "4.7.8")}
    everything = [gw.log_text().encode(), *(o.encode() for o in outputs)]
    everything += [p.read_bytes() for p in (workdir / "mailpipe").rglob("*") if p.is_file()
                   and p.name != "mailpipe.yaml"]
    for blob in everything:
        for form in forms_of(WRONG, "gateway"):
            assert form not in blob
