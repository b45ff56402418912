"""Intake listener modes of docs/configuration.md (``listen``): ``require_auth`` and ``tls: implicit``.

One ``pipeline serve`` with two listeners is shared by the module:

* STARTTLS with ``require_auth: true``: even a client from ``relay.networks`` must log in before
  MAIL; AUTH PLAIN/LOGIN is offered only over TLS;
* ``tls: implicit``: TLS from the first byte (465 style); a plain SMTP client gets no greeting.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.core.helpers import RawClient
from tests.peers.certs import TestPKI
from tests.peers.mailpipe import MailpipeProcess, run_pipeline
from tests.peers.net import free_port
from tests.peers.sink import Received, RecordingSink

from .helpers import SMTP_TIMEOUT, make_message, queue_id_of, wait_states

USER, PASSWORD = "branch-office", "correct horse battery staple"


class Gateway:
    """The shared gateway: its process, the two listener ports and the sink it delivers to."""

    def __init__(self, proc: MailpipeProcess, auth_port: int, implicit_port: int, sink: RecordingSink,
                 pki: TestPKI) -> None:
        self.proc = proc
        self.auth_port = auth_port
        self.implicit_port = implicit_port
        self.sink = sink
        self.client_tls = ssl.create_default_context(cafile=str(pki.ca_file))

    def delivered(self, code: int, text: bytes, recipient: str) -> tuple[str, Received]:
        """The intake answered DATA with ``code`` 250: wait until the message is delivered; its queue id and
        the one copy the sink got."""
        assert code == 250, (code, text)
        queue_id = queue_id_of(text)
        wait_states(self.proc, queue_id, {recipient: "delivered"})
        got = [m for m in self.sink.messages if m.rcpt_tos == [recipient]]
        assert len(got) == 1, got
        return queue_id, got[0]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, pki: TestPKI) -> Iterator[Gateway]:
    workdir: Path = tmp_path_factory.mktemp("intake-modes")
    password_hash = run_pipeline(None, "hash-password", "--password", PASSWORD).stdout.strip()
    auth_port, implicit_port = free_port(), free_port()
    with RecordingSink("127.0.0.1") as sink:
        proc = MailpipeProcess(workdir / "mailpipe", {
            "hostname": "gw.test",
            "state_dir": str(workdir / "mailpipe" / "state"),
            "listen": [
                {"address": f"127.0.0.1:{auth_port}", "tls": "starttls", "cert": str(pki.cert_file),
                 "key": str(pki.key_file), "require_auth": True},
                {"address": f"127.0.0.1:{implicit_port}", "tls": "implicit", "cert": str(pki.cert_file),
                 "key": str(pki.key_file)},
            ],
            "relay": {"users": [{"username": USER, "password_hash": password_hash}]},
            "chain": [{"smarthost": {"server": f"{sink.host}:{sink.port}", "tls": "none"}}],
        })
        with proc:
            yield Gateway(proc, auth_port, implicit_port, sink, pki)


def test_require_auth_refuses_mail_and_rcpt_before_login(gateway: Gateway):
    """A client from 127.0.0.1 (in relay.networks) that has not logged in: 530 5.7.0 at MAIL and at RCPT."""
    client = RawClient("127.0.0.1", gateway.auth_port)
    try:
        assert client.greeting[0] == 220
        code, text = client.cmd("EHLO client.test")
        assert code == 250 and "STARTTLS" in text
        assert "AUTH" not in text  # credentials only over TLS
        assert client.cmd("MAIL FROM:<alice@example.org>") == (530, "530 5.7.0 Authentication required")
        assert client.cmd("RCPT TO:<bob@remote.test>") == (530, "530 5.7.0 Authentication required")
        assert client.cmd("AUTH PLAIN") == (538, "538 5.7.11 Encryption required for requested "
                                                 "authentication mechanism")
        assert client.cmd("QUIT")[0] == 221
    finally:
        client.close()
    assert gateway.proc.cli_json("queue", "list") == []


def test_require_auth_refuses_a_wrong_password_over_tls(gateway: Gateway):
    """After STARTTLS a wrong password is refused with 535 and MAIL is still refused with 530."""
    with smtplib.SMTP("127.0.0.1", gateway.auth_port, timeout=SMTP_TIMEOUT) as client:
        client.starttls(context=gateway.client_tls)
        client.ehlo("client.test")
        assert "PLAIN" in client.esmtp_features["auth"].split()
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            client.login(USER, "not the password")
        assert refused.value.smtp_code == 535
        assert client.mail("alice@example.org") == (530, b"5.7.0 Authentication required")


def test_require_auth_accepts_after_auth_over_starttls(gateway: Gateway):
    """STARTTLS, AUTH with the relay user's password: MAIL, RCPT and DATA are accepted and the mail leaves."""
    with smtplib.SMTP("127.0.0.1", gateway.auth_port, timeout=SMTP_TIMEOUT) as client:
        client.starttls(context=gateway.client_tls)
        client.ehlo("client.test")
        assert client.login(USER, PASSWORD) == (235, b"2.7.0 Authentication successful")
        assert client.mail("alice@example.org") == (250, b"2.1.0 Ok")
        assert client.rcpt("carol@remote.test") == (250, b"2.1.5 Ok")
        code, text = client.data(make_message("after login", to="carol@remote.test"))
    queue_id, got = gateway.delivered(code, text, "carol@remote.test")
    assert f"with ESMTPSA id {queue_id}".encode() in got.data  # TLS and a login, in the trace header


def test_implicit_tls_listener_serves_smtp_over_tls(gateway: Gateway):
    """SMTP_SSL trusting the test CA: greeted, relayed (client in relay.networks), delivered."""
    with smtplib.SMTP_SSL("127.0.0.1", gateway.implicit_port, timeout=SMTP_TIMEOUT,
                          context=gateway.client_tls) as client:
        code, _ = client.ehlo("client.test")
        assert code == 250
        assert not client.has_extn("starttls")  # already encrypted
        client.mail("alice@example.org")
        assert client.rcpt("dave@remote.test") == (250, b"2.1.5 Ok")
        code, text = client.data(make_message("over implicit tls", to="dave@remote.test"))
    queue_id, got = gateway.delivered(code, text, "dave@remote.test")
    assert f"with ESMTPS id {queue_id}".encode() in got.data


def test_implicit_tls_listener_gives_plain_smtp_no_greeting(gateway: Gateway):
    """A plain SMTP client on the implicit-TLS port is never greeted in clear; its EHLO ends the connection."""
    with socket.create_connection(("127.0.0.1", gateway.implicit_port), timeout=5) as sock:
        sock.settimeout(1.0)
        with pytest.raises(TimeoutError):
            sock.recv(1024)  # the server waits for a TLS ClientHello, says nothing
        sock.settimeout(5.0)
        sock.sendall(b"EHLO client.test\r\n")
        received = b""
        while chunk := sock.recv(4096):  # bounded by the 5s timeout; ends when the server closes
            received += chunk
            assert len(received) < 65536
    assert b"220" not in received and b"250" not in received
