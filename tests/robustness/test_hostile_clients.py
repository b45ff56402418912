"""Hostile and broken SMTP clients get clear replies, nothing is relayed, and the server stays up."""

from __future__ import annotations

import smtplib
import socket
import ssl
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.core.helpers import RawClient, make_message
from tests.peers.certs import TestPKI
from tests.peers.mailpipe import MailpipeProcess
from tests.peers.net import free_port, wait_until
from tests.peers.sink import RecordingSink
from tests.peers.tcp import read_until


@pytest.fixture(scope="module")
def sink():
    with RecordingSink("127.0.1.40") as s:
        yield s


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, sink, pki):
    work = tmp_path_factory.mktemp("hostile")
    port = free_port()
    gw = MailpipeProcess(work, {
        "hostname": "gw.test", "state_dir": str(work / "state"),
        "listen": [{"address": f"127.0.0.1:{port}", "tls": "starttls", "cert": str(pki.cert_file),
                    "key": str(pki.key_file)}],
        "relay": {"networks": ["127.0.0.1/32"]},
        "intake": {"max_connections": 8, "max_recipients": 50, "timeout": "2s", "max_message_size": "1M"},
        "chain": [{"smarthost": {"server": sink.host, "port": sink.port, "tls": "none"}}],
    })
    with gw:
        yield gw


def still_serving(gateway, sink) -> None:
    """A normal message still goes through after the abuse."""
    before = len(sink.messages)
    host, port = gateway.address
    with smtplib.SMTP(host, port, timeout=10) as client:
        client.sendmail("a@example.org", ["b@example.net"], make_message("still up"))
    sink.wait_for(before + 1)


def client(gateway, source: str | None = None) -> RawClient:
    host, port = gateway.address
    c = RawClient(host, port, source=source)
    assert c.greeting[0] == 220
    return c


RELAY_TESTS = [
    "victim@example.net", "victim%example.net@gw.test", "victim%example.net@[127.0.0.1]",
    '"victim@example.net"@gw.test', "example.net!victim@gw.test", "@gw.test:victim@example.net",
    "victim@[127.0.0.1]", "VICTIM@EXAMPLE.NET", "victim@example.net.", "<victim@example.net>",
    "postmaster@gw.test", "victim@localhost",
]


RELAY_DENIED = "554 5.7.1 Relay access denied: log in or send from an allowed network"


@pytest.mark.parametrize("rcpt", RELAY_TESTS)
def test_open_relay_set_refused_from_outside(gateway: MailpipeProcess, rcpt: str) -> None:
    """Every address trick of the open-relay test set is refused to a client outside relay.networks."""
    c = client(gateway, source="127.0.0.3")
    c.cmd("EHLO relaytest.example")
    assert c.cmd("MAIL FROM:<spam@example.com>")[0] == 250
    code, text = c.cmd(f"RCPT TO:<{rcpt.strip('<>')}>")
    expected = "553 5.1.3 Error: malformed address" if rcpt == "victim@example.net." else RELAY_DENIED
    assert f"{code} {text[4:]}" == expected, (rcpt, code, text)
    assert c.cmd("DATA") == (503, "503 Error: need RCPT command")
    c.close()


def test_overlong_command_and_data_lines(gateway: MailpipeProcess, sink: RecordingSink) -> None:
    """A 2,000-byte command and a 5,000-byte data line get 500; the session and the server go on."""
    c = client(gateway)
    c.cmd("EHLO client.test")
    code, text = c.cmd("MAIL FROM:<" + "a" * 2000 + "@example.org>")
    assert code == 500 and "too long" in text
    assert c.cmd("MAIL FROM:<a@example.org>")[0] == 250
    assert c.cmd("RCPT TO:<b@example.net>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send(b"Subject: long line\r\n\r\n" + b"x" * 5000 + b"\r\n.\r\n")
    code, text = c.reply()
    assert code == 500 and "too long" in text.lower()
    c.close()
    still_serving(gateway, sink)


def test_huge_header_block_over_the_size_limit(gateway: MailpipeProcess) -> None:
    """A 1.35 MB header block over max_message_size gets 552 5.3.4."""
    c = client(gateway)
    c.cmd("EHLO client.test")
    c.cmd("MAIL FROM:<a@example.org>")
    c.cmd("RCPT TO:<b@example.net>")
    assert c.cmd("DATA")[0] == 354
    c.send(b"".join(b"X-Filler-%d: %s\r\n" % (i, b"y" * 900) for i in range(1500)) + b"\r\nbody\r\n.\r\n")
    assert c.reply() == (552, "552 5.3.4 Error: Too much mail data")
    c.close()


def test_nul_and_8bit_envelope(gateway: MailpipeProcess) -> None:
    """NUL in an address is refused (553 5.1.3); 8-bit addresses need SMTPUTF8 (553 without, 250 with)."""
    c = client(gateway)
    c.cmd("EHLO client.test")
    assert c.cmd(b"MAIL FROM:<a\x00b@example.org>\r\n") == (
        553, "553 5.1.3 Control characters are not allowed in addresses")
    code, text = c.cmd("MAIL FROM:<jörg@example.org>".encode() + b"\r\n")
    assert code == 553 and "SMTPUTF8" in text
    assert c.cmd("MAIL FROM:<jörg@example.org> SMTPUTF8".encode() + b"\r\n")[0] == 250
    assert c.cmd("RCPT TO:<zoë@example.net>".encode() + b"\r\n")[0] == 250
    c.close()


def test_thousands_of_recipients(gateway: MailpipeProcess) -> None:
    """2,000 pipelined RCPTs: the first 50 (max_recipients) get 250, the rest 452."""
    c = client(gateway)
    c.cmd("EHLO client.test")
    c.cmd("MAIL FROM:<a@example.org>")
    c.send(b"".join(b"RCPT TO:<r%d@example.net>\r\n" % i for i in range(2000)))
    codes = [c.reply()[0] for _ in range(2000)]
    assert codes[:50] == [250] * 50
    assert set(codes[50:]) == {452}
    c.close()


def test_silent_client_is_disconnected(gateway: MailpipeProcess) -> None:
    """A client that says nothing after EHLO is disconnected after intake.timeout (2 s), without a reply."""
    c = client(gateway)
    assert c.cmd("EHLO client.test")[0] == 250
    c.sock.settimeout(15)
    started = time.monotonic()
    data = c.buf
    for _ in range(100):  # bounded: recv returns b"" once the server hangs up
        chunk = c.sock.recv(4096)
        if not chunk:
            break
        data += chunk
    waited = time.monotonic() - started
    assert data == b"", data  # nothing more is said: the connection just ends
    assert 1.5 < waited < 15, f"disconnected after {waited:.1f}s; intake.timeout is 2s"
    c.close()


def test_the_idle_timer_counts_from_the_last_command(gateway: MailpipeProcess) -> None:
    """intake.timeout (2 s) is idle time: a client that says NOOP every 0.7 s stays connected well past 2 s
    after EHLO; once it goes silent it is disconnected about 2 s after its last command."""
    c = client(gateway)
    assert c.cmd("EHLO client.test")[0] == 250
    started = time.monotonic()
    for _ in range(6):  # bounded: 6 commands over about 4 s
        time.sleep(0.7)  # pacing of the client itself, not a wait for the server
        assert c.cmd("NOOP")[0] == 250
    assert time.monotonic() - started > 4.0
    last = time.monotonic()
    c.sock.settimeout(15)
    assert c.sock.recv(4096) == b""  # nothing more is said: the connection just ends
    waited = time.monotonic() - last
    assert 1.5 < waited < 15, f"disconnected {waited:.1f}s after the last command; intake.timeout is 2s"
    c.close()


def test_connection_limit_answers_421(gateway: MailpipeProcess, sink: RecordingSink) -> None:
    """The 9th connection over max_connections 8 gets 421 4.7.0; once they close, mail flows again."""
    host, port = gateway.address
    held = [client(gateway) for _ in range(8)]
    extra = socket.create_connection((host, port), timeout=10)
    reply = read_until(extra, b"\r\n")
    assert reply.startswith(b"421 4.7.0"), reply
    extra.close()
    for c in held:
        c.close()
    wait_until(lambda: _can_greet(host, port), 10, "a free connection slot again")
    still_serving(gateway, sink)


def _can_greet(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=5) as s:
            return s.recv(4).startswith(b"220")
    except OSError:
        return False


def test_starttls_command_injection_is_discarded(gateway: MailpipeProcess, pki: TestPKI) -> None:
    """CVE-2011-0411: commands pipelined after STARTTLS in the same packet must not run after TLS."""
    c = client(gateway)
    c.cmd("EHLO client.test")
    c.send(b"STARTTLS\r\nMAIL FROM:<injected@example.org>\r\n")
    assert c.reply()[0] == 220
    ctx = ssl.create_default_context(cafile=str(pki.ca_file))
    tls = ctx.wrap_socket(c.sock, server_hostname="127.0.0.1")
    c.sock, c.buf = tls, b""
    code, text = c.cmd("EHLO client.test")
    assert code == 250 and text.startswith("250-gw.test"), text  # no stray reply to the injected MAIL
    assert c.cmd("MAIL FROM:<real@example.org>")[0] == 250  # not "nested MAIL": the injection never ran
    c.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.binary(min_size=0, max_size=300), min_size=1, max_size=6))
def test_fuzz_raw_bytes(gateway: MailpipeProcess, chunks: list[bytes]) -> None:
    """Random bytes after the greeting: the server answers or hangs up, and keeps serving others."""
    host, port = gateway.address
    with socket.create_connection((host, port), timeout=10) as s:
        s.recv(1024)
        for chunk in chunks:
            try:
                s.sendall(chunk + b"\r\n")
            except OSError:
                break
    assert _can_greet(host, port)


def test_server_still_up_after_everything(gateway: MailpipeProcess, sink: RecordingSink) -> None:
    """After all the abuse a normal message is still delivered and nothing crashed."""
    still_serving(gateway, sink)
    assert "Traceback" not in gateway.log_text()


def test_slow_client_trickling_a_command_is_cut_at_the_timeout(gateway: MailpipeProcess, sink: RecordingSink) -> None:
    """A slow-loris client (one byte at a time, never finishing a command) does not hold a slot forever."""
    c = client(gateway)
    c.sock.settimeout(1)
    started = time.monotonic()
    closed = False
    for _ in range(40):  # bounded: at most 40 bytes over about 20 s; intake.timeout is 2 s
        try:
            c.sock.sendall(b"E")
            if c.sock.recv(4096) == b"":
                closed = True
                break
        except TimeoutError:
            time.sleep(0.5)  # pacing of the slow client itself, not a wait for the server
        except OSError:
            closed = True
            break
    assert closed and time.monotonic() - started < 15
    c.close()
    still_serving(gateway, sink)
