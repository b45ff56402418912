"""Relay control: only relay.networks, or logged-in users (AUTH only after STARTTLS)."""

from __future__ import annotations

import smtplib
import ssl

import pytest
from argon2 import PasswordHasher

from tests.peers.certs import TestPKI
from tests.peers.net import free_port
from tests.peers.sink import RecordingSink

from .helpers import RawClient, make_message


@pytest.fixture
def tls_gateway(mailpipe_factory, pki: TestPKI):
    """A gateway that lets only 127.0.0.1 relay freely; user 'office' may relay after AUTH."""
    sink = RecordingSink("127.0.1.32").__enter__()
    port = free_port()
    gw = mailpipe_factory({
        "hostname": "gw.test",
        "listen": [{"address": f"127.0.0.1:{port}", "tls": "starttls", "cert": str(pki.cert_file),
                    "key": str(pki.key_file)}],
        "relay": {"networks": ["127.0.0.1/32"],
                  "users": [{"username": "office", "password_hash": PasswordHasher().hash("s3cret-office")}]},
        "chain": [{"smarthost": {"server": sink.host, "port": sink.port, "tls": "none"}}],
    })
    gw.start()
    yield gw, sink, port
    gw.stop()
    sink.__exit__(None, None, None)


def test_client_outside_networks_is_refused_at_rcpt(tls_gateway):
    gw, sink, port = tls_gateway
    c = RawClient("127.0.0.1", port, source="127.0.0.2")
    c.cmd("EHLO outsider.test")
    assert c.cmd("MAIL FROM:<spammer@example.com>")[0] == 250
    code, text = c.cmd("RCPT TO:<victim@example.net>")
    assert code == 554 and "5.7.1" in text
    c.close()
    assert gw.cli_json("queue", "list") == []


def test_auth_not_offered_before_starttls(tls_gateway):
    _, _, port = tls_gateway
    c = RawClient("127.0.0.1", port, source="127.0.0.2")
    code, caps = c.cmd("EHLO outsider.test")
    assert "STARTTLS" in caps and "AUTH" not in caps
    code, text = c.cmd("AUTH PLAIN AG9mZmljZQBzM2NyZXQtb2ZmaWNl")
    assert code == 538
    c.close()


def test_relay_allowed_after_auth_over_starttls(tls_gateway, pki: TestPKI):
    gw, sink, port = tls_gateway
    ctx = ssl.create_default_context(cafile=str(pki.ca_file))
    with smtplib.SMTP("127.0.0.1", port, source_address=("127.0.0.2", 0), timeout=10) as client:
        client.ehlo("office.test")
        client.starttls(context=ctx)
        client.ehlo("office.test")
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login("office", "wrong-password")
        client.login("office", "s3cret-office")
        client.sendmail("boss@example.org", ["partner@example.net"], make_message("after auth"))
    got = sink.wait_for(1)[0]
    assert got.rcpt_tos == ["partner@example.net"]
    assert b"with ESMTPSA id" in got.data.split(b"\r\n\r\n")[0]
    assert "wrong-password" not in gw.log_text() and "s3cret-office" not in gw.log_text()
