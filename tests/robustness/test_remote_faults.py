"""Remote servers that misbehave during delivery: retried or recorded right, never lost,
never marked delivered without a 250 after the final dot."""

from __future__ import annotations

import smtplib
from collections.abc import Callable

import pytest

from tests.core.helpers import make_message
from tests.peers.badserver import BadServer
from tests.peers.certs import TestPKI
from tests.peers.mailpipe import MailpipeProcess
from tests.peers.net import wait_until


def submit(gw: MailpipeProcess, message: bytes) -> str:
    """Hand ``message`` from a@example.org to b@example.net to the gateway over SMTP; its queue id."""
    host, port = gw.address
    with smtplib.SMTP(host, port, timeout=10) as client:
        client.ehlo("client.test")
        client.mail("a@example.org")
        client.rcpt("b@example.net")
        code, text = client.data(message)
    assert code == 250, (code, text)
    return text.decode().rsplit(" ", 1)[-1]


def deferred_attempt(gw, queue_id: str) -> dict:
    def attempts() -> list[dict]:
        return gw.cli_json("queue", "show", queue_id)["attempts"]

    wait_until(lambda: attempts() != [], 30, "an attempt recorded")
    shown = gw.cli_json("queue", "show", queue_id)
    assert [r["state"] for r in shown["recipients"]] == ["deferred"], shown
    return shown["attempts"][0]


# fault, enhanced status code of the 451, text of the attempt, message bodies the server received in full
FAULT_CASES = [
    ("hang_after_connect", "4.4.2", "timed out talking to {server} at connect", 0),
    ("hang_after_data", "4.4.2", "timed out talking to {server} at DATA", 1),
    ("drop_mid_data", "4.4.2", "{server} closed the connection at DATA", 0),
    ("close_before_reply", "4.4.2", "{server} closed the connection at DATA", 1),
    ("garbage_greeting", "4.5.0", "unexpected reply from {server} at connect: -1 Malformed SMTP response line", 0),
    ("garbage_after_rcpt", "4.5.0", "unexpected reply from {server} at DATA: -1 Malformed SMTP response line", 0),
]


@pytest.mark.parametrize(("fault", "enhanced", "expect", "bodies"), [pytest.param(*c, id=c[0]) for c in FAULT_CASES])
def test_fault_defers_and_never_counts_as_delivered(
        mailpipe_factory: Callable[..., MailpipeProcess], fault: str, enhanced: str, expect: str, bodies: int,
) -> None:
    """Each fault is a temporary failure (451 with its own enhanced code and text), even when the whole
    message reached the server: without a 250 after the final dot nothing counts as delivered."""
    with BadServer(fault) as bad:
        gw = mailpipe_factory({
            "hostname": "gw.test", "delivery": {"timeout": "2s", "shutdown_grace": "2s"},
            "chain": [{"smarthost": {"server": bad.host, "port": bad.port, "tls": "none"}},
                      {"retry": {"every": "1h", "expire_after": "2d"}}],
        })
        with gw:
            queue_id = submit(gw, make_message(f"fault {fault}", "x\n" * 200))
            attempt = deferred_attempt(gw, queue_id)
            assert (attempt["recipient"], attempt["outcome"], attempt["action"]) == (
                "b@example.net", "temporary", "deferred")
            assert (attempt["code"], attempt["enhanced"]) == (451, enhanced), attempt
            assert expect.format(server=f"{bad.host}:{bad.port}") in attempt["text"], attempt
            assert gw.cli_json("queue", "list")[0]["recipients"] == {"deferred": 1}
        assert len(bad.bodies) == bodies
        assert "Traceback" not in gw.log_text()


def test_starttls_response_injection_is_discarded_on_delivery(
        mailpipe_factory: Callable[..., MailpipeProcess], pki: TestPKI,
) -> None:
    """CVE-2011-0411 from the client side: a reply injected after 220 to STARTTLS is never read as TLS data."""
    with BadServer("starttls_injection", cert=(str(pki.cert_file), str(pki.key_file))) as bad:
        gw = mailpipe_factory({
            "hostname": "gw.test", "delivery": {"timeout": "5s"},
            "chain": [{"smarthost": {"server": bad.host, "port": bad.port, "tls": "starttls",
                                     "ca_file": str(pki.ca_file)}}],
        })
        with gw:
            queue_id = submit(gw, make_message("over tls"))
            wait_until(lambda: gw.cli_json("queue", "show", queue_id)["attempts"] != [], 30, "attempt recorded")
            attempt = gw.cli_json("queue", "show", queue_id)["attempts"][0]
        assert attempt["outcome"] == "delivered" and "queued-for-real" in attempt["text"], attempt
        assert len(bad.bodies) == 1 and b"Subject: over tls" in bad.bodies[0]
