"""Remote servers that misbehave during delivery: retried or recorded right, never lost,
never marked delivered without a 250 after the final dot."""

from __future__ import annotations

import smtplib

import pytest

from tests.core.helpers import make_message
from tests.peers.badserver import BadServer
from tests.peers.net import wait_until


def deferred_attempt(gw, queue_id: str) -> dict:
    def attempts() -> list[dict]:
        return gw.cli_json("queue", "show", queue_id)["attempts"]

    wait_until(lambda: attempts() != [], 30, "an attempt recorded")
    shown = gw.cli_json("queue", "show", queue_id)
    assert [r["state"] for r in shown["recipients"]] == ["deferred"], shown
    return shown["attempts"][0]


@pytest.mark.parametrize("fault,expect", [
    ("hang_after_connect", "timed out"),
    ("hang_after_data", "timed out"),
    ("drop_mid_data", ""),
    ("close_before_reply", ""),
    ("garbage_greeting", ""),
    ("garbage_after_rcpt", ""),
])
def test_fault_defers_and_never_counts_as_delivered(mailpipe_factory, fault: str, expect: str):
    with BadServer(fault) as bad:
        gw = mailpipe_factory({
            "hostname": "gw.test", "delivery": {"timeout": "2s", "shutdown_grace": "2s"},
            "chain": [{"smarthost": {"server": bad.host, "port": bad.port, "tls": "none"}},
                      {"retry": {"every": "1h", "expire_after": "2d"}}],
        })
        with gw:
            host, port = gw.address
            with smtplib.SMTP(host, port) as client:
                client.ehlo("client.test")
                client.mail("a@example.org")
                client.rcpt("b@example.net")
                code, text = client.data(make_message(f"fault {fault}", "x\n" * 200))
            assert code == 250
            queue_id = text.decode().rsplit(" ", 1)[-1]
            attempt = deferred_attempt(gw, queue_id)
            assert attempt["outcome"] == "temporary"
            assert attempt["code"] and 400 <= attempt["code"] < 500
            assert expect in attempt["text"]
            assert gw.cli_json("queue", "list")[0]["recipients"] == {"deferred": 1}
        assert "Traceback" not in gw.log_text()


def test_starttls_response_injection_is_discarded_on_delivery(mailpipe_factory, pki):
    """CVE-2011-0411 from the client side: a reply injected after 220 to STARTTLS is never read as TLS data."""
    with BadServer("starttls_injection", cert=(str(pki.cert_file), str(pki.key_file))) as bad:
        gw = mailpipe_factory({
            "hostname": "gw.test", "delivery": {"timeout": "5s"},
            "chain": [{"smarthost": {"server": bad.host, "port": bad.port, "tls": "starttls",
                                     "ca_file": str(pki.ca_file)}}],
        })
        with gw:
            host, port = gw.address
            with smtplib.SMTP(host, port) as client:
                client.ehlo("client.test")
                client.mail("a@example.org")
                client.rcpt("b@example.net")
                code, text = client.data(make_message("over tls"))
            queue_id = text.decode().rsplit(" ", 1)[-1]
            wait_until(lambda: gw.cli_json("queue", "show", queue_id)["attempts"] != [], 30, "attempt recorded")
            attempt = gw.cli_json("queue", "show", queue_id)["attempts"][0]
        assert attempt["outcome"] == "delivered" and "queued-for-real" in attempt["text"], attempt
        assert len(bad.bodies) == 1 and b"Subject: over tls" in bad.bodies[0]
