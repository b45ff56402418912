"""SMTP smuggling (the published end-of-data variants): never a second message, towards any peer."""

from __future__ import annotations

import pytest

from tests.peers.net import wait_until
from tests.peers.sink import RecordingSink

from .helpers import RawClient

# End-of-data look-alikes from the SMTP smuggling research (SEC Consult, 2023) and Postfix's notes.
VARIANTS = [b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r\n.\r", b"\n.\r", b"\r.\n", b"\r.\r\n", b"\r\n\x00.\r\n"]

SMUGGLED = (b"MAIL FROM:<ceo@bank.example>\r\nRCPT TO:<victim@example.net>\r\nDATA\r\n"
            b"From: ceo@bank.example\r\nSubject: smuggled\r\n\r\nwire the money\r\n")


@pytest.fixture(scope="module")
def sink():
    with RecordingSink("127.0.1.37") as s:
        yield s


@pytest.fixture
def gateway(mailpipe_factory, sink):
    gw = mailpipe_factory({"hostname": "gw.test",
                           "chain": [{"smarthost": {"server": sink.host, "port": sink.port, "tls": "none"}}]})
    with gw:
        yield gw


@pytest.mark.parametrize("variant", VARIANTS, ids=[repr(v) for v in VARIANTS])
def test_variant_never_yields_a_second_message(gateway, sink, variant: bytes):
    before = len(sink.messages)
    host, port = gateway.address
    c = RawClient(host, port)
    c.cmd("EHLO attacker.test")
    # Everything in one write, pipelined, as an attacker would send it.
    c.send(b"MAIL FROM:<user@example.org>\r\nRCPT TO:<friend@example.net>\r\nDATA\r\n")
    assert [c.reply()[0] for _ in range(3)] == [250, 250, 354]
    c.send(b"From: user@example.org\r\nSubject: innocent\r\n\r\nhello" + variant + SMUGGLED + b"\r\n.\r\nQUIT\r\n")
    code, text = c.reply()
    assert c.reply()[0] == 221  # QUIT: no replies to smuggled commands in between
    c.close()
    if b"\x00" in variant:  # NUL is refused outright: no message at all
        assert code == 554 and "5.6.0" in text
        assert gateway.cli_json("queue", "list") == [] and len(sink.messages) == before
        return
    assert code == 250 and "queued as" in text
    got = sink.wait_for(before + 1)
    wait_until(lambda: len(gateway.cli_json("queue", "list")) == 0, 10, "queue drained")
    assert len(sink.messages) == before + 1
    msg = got[before]
    assert msg.rcpt_tos == ["friend@example.net"]
    assert b"wire the money" in msg.data  # the smuggled text stayed content of the one message
    body = msg.data.replace(b"\r\n", b"")
    assert b"\r" not in body and b"\n" not in body  # every line end canonical CRLF downstream
    assert all(m.rcpt_tos != ["victim@example.net"] for m in sink.messages)
