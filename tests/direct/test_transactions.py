"""Per-domain transactions, per-recipient outcomes, STARTTLS modes, session reuse, concurrency."""

from __future__ import annotations

import ssl
import warnings

from tests.direct.aliases import DirectGateway, DnsmasqFactory, MxSinks
from tests.peers.certs import TestPKI
from tests.peers.sink import RecordingSink, most_at_once

MX1, MX2, MX3 = "127.0.1.21", "127.0.1.22", "127.0.1.23"
SENDER = "sender@origin.test"
THREE_DOMAINS = [
    "local=/test/",
    "mx-host=one.test,mx.one.test,10", f"host-record=mx.one.test,{MX1}",
    "mx-host=two.test,mx.two.test,10", f"host-record=mx.two.test,{MX2}",
    "mx-host=three.test,mx.three.test,10", f"host-record=mx.three.test,{MX3}",
]


def test_one_message_to_three_domains_leaves_as_three_transactions(
        dnsmasq_factory: DnsmasqFactory, mx_sinks: MxSinks, direct_gateway: DirectGateway,
) -> None:
    """One message to three domains: one SMTP transaction per domain, recipients grouped."""
    dns = dnsmasq_factory(THREE_DOMAINS)
    s1, s2, s3 = mx_sinks(MX1, MX2, MX3)
    gw = direct_gateway(dns)
    rcpts = ["a@one.test", "b@two.test", "c@one.test", "d@three.test"]
    mid = gw.submit(SENDER, rcpts)
    gw.deliver()
    assert set(gw.states(mid).values()) == {"delivered"}
    assert [m.rcpt_tos for m in s1.wait_for(1)] == [["a@one.test", "c@one.test"]]
    assert [m.rcpt_tos for m in s2.wait_for(1)] == [["b@two.test"]]
    assert [m.rcpt_tos for m in s3.wait_for(1)] == [["d@three.test"]]
    routes = {r: a.route for r, a in gw.last_attempts(mid).items()}
    assert routes == {"a@one.test": "direct:one.test", "c@one.test": "direct:one.test",
                      "b@two.test": "direct:two.test", "d@three.test": "direct:three.test"}


def test_550_for_one_recipient_and_250_for_another_in_one_transaction(
        dnsmasq_factory: DnsmasqFactory, mx_sinks: MxSinks, direct_gateway: DirectGateway,
) -> None:
    """Per-recipient replies in one transaction: 550 fails, 452 defers, 250 delivers."""
    dns = dnsmasq_factory(THREE_DOMAINS)
    (sink,) = mx_sinks(MX1)
    sink.behaviour.rcpt["gone@one.test"] = "550 5.1.1 no such user"
    sink.behaviour.rcpt["full@one.test"] = "452 4.2.2 mailbox full"
    gw = direct_gateway(dns)
    mid = gw.submit(SENDER, ["gone@one.test", "here@one.test", "full@one.test"])
    gw.deliver()
    assert gw.states(mid) == {"gone@one.test": "failed", "here@one.test": "delivered",
                              "full@one.test": "deferred"}
    [got] = sink.wait_for(1)
    assert got.rcpt_tos == ["here@one.test"]
    attempts = gw.last_attempts(mid)
    assert (attempts["gone@one.test"].code, attempts["gone@one.test"].enhanced) == (550, "5.1.1")
    assert "no such user" in attempts["gone@one.test"].text
    assert (attempts["full@one.test"].code, attempts["full@one.test"].enhanced) == (452, "4.2.2")
    assert attempts["here@one.test"].code == 250
    assert {a.remote_host for a in attempts.values()} == {"mx.one.test"}


def _tls_sink(pki, port: int) -> RecordingSink:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(pki.cert_file), str(pki.key_file))
    return RecordingSink(MX1, port, tls_context=ctx)


def test_required_tls_refuses_a_host_without_starttls(
        dnsmasq_factory: DnsmasqFactory, mx_sinks: MxSinks, direct_gateway: DirectGateway,
) -> None:
    """tls: required against a server without STARTTLS: 4.7.4, nothing sent in clear."""
    dns = dnsmasq_factory(THREE_DOMAINS)
    (sink,) = mx_sinks(MX1)  # no STARTTLS offered
    gw = direct_gateway(dns, tls="required")
    mid = gw.submit(SENDER, ["a@one.test"])
    gw.deliver()
    assert gw.states(mid) == {"a@one.test": "deferred"}
    assert gw.last_attempts(mid)["a@one.test"].enhanced == "4.7.4"
    assert sink.messages == []


def test_required_tls_delivers_over_starttls_without_checking_the_certificate(
        dnsmasq_factory: DnsmasqFactory, pki: TestPKI, mx_port: int, direct_gateway: DirectGateway,
) -> None:
    """tls: required encrypts but does not verify the MX certificate (no common CA for MX hosts)."""
    dns = dnsmasq_factory(THREE_DOMAINS)
    # The certificate is for loopback names, not mx.one.test, and its CA is not trusted: still used.
    with _tls_sink(pki, mx_port) as sink:
        gw = direct_gateway(dns, tls="required")
        mid = gw.submit(SENDER, ["a@one.test"])
        gw.deliver()
        [got] = sink.wait_for(1)
    assert got.tls and got.rcpt_tos == ["a@one.test"]
    assert gw.states(mid) == {"a@one.test": "delivered"}


def test_opportunistic_tls_delivers_in_plain_text_when_not_offered(
        dnsmasq_factory: DnsmasqFactory, mx_sinks: MxSinks, direct_gateway: DirectGateway,
) -> None:
    """tls: opportunistic (the default) delivers in plain text when STARTTLS is not offered."""
    dns = dnsmasq_factory(THREE_DOMAINS)
    (sink,) = mx_sinks(MX1)
    gw = direct_gateway(dns)  # tls: opportunistic is the default
    mid = gw.submit(SENDER, ["a@one.test"])
    gw.deliver()
    assert gw.states(mid) == {"a@one.test": "delivered"}
    [got] = sink.wait_for(1)
    assert not got.tls and got.rcpt_tos == ["a@one.test"]


def test_messages_to_the_same_mx_reuse_one_connection(
        dnsmasq_factory: DnsmasqFactory, mx_sinks: MxSinks, direct_gateway: DirectGateway,
) -> None:
    """Two messages to the same MX, one after the other, travel over one TCP connection (RSET between)."""
    dns = dnsmasq_factory(THREE_DOMAINS)
    (sink,) = mx_sinks(MX1)
    gw = direct_gateway(dns)
    first = gw.submit(SENDER, ["a@one.test"])
    gw.deliver()
    second = gw.submit(SENDER, ["b@one.test"])
    gw.deliver()
    assert gw.states(first) == {"a@one.test": "delivered"}
    assert gw.states(second) == {"b@one.test": "delivered"}
    got = sink.wait_for(2)
    assert got[0].peer == got[1].peer  # same client address and port: one TCP connection
    [conn] = sink.connections
    assert conn.messages == 2 and conn.closed is None  # still kept for the next message
    assert sink.session_commands() == [["EHLO", "MAIL", "RCPT", "DATA", "RSET", "MAIL", "RCPT", "DATA"]]


def test_connection_reuse_can_be_turned_off(
        dnsmasq_factory: DnsmasqFactory, mx_sinks: MxSinks, direct_gateway: DirectGateway,
) -> None:
    """connection_reuse: false: one connection per message, each ended with QUIT."""
    dns = dnsmasq_factory(THREE_DOMAINS)
    (sink,) = mx_sinks(MX1)
    gw = direct_gateway(dns, connection_reuse=False)
    gw.submit(SENDER, ["a@one.test"])
    gw.deliver()
    gw.submit(SENDER, ["b@one.test"])
    gw.deliver()
    got = sink.wait_for(2)
    assert got[0].peer != got[1].peer
    sink.wait(lambda s: s.live == 0, 10, "both connections to close")
    assert [(c.messages, c.quit) for c in sink.connections] == [(1, True), (1, True)]


def test_per_domain_and_total_concurrency_limits(
        dnsmasq_factory: DnsmasqFactory, mx_sinks: MxSinks, direct_gateway: DirectGateway,
) -> None:
    """max_connections 2, max_connections_per_domain 1: counted at the servers, as transactions in progress."""
    dns = dnsmasq_factory(THREE_DOMAINS)
    sinks = mx_sinks(MX1, MX2, MX3)
    for sink in sinks:
        sink.behaviour.data_delay = 0.1  # each transaction lasts a while, so parallel ones overlap
    gw = direct_gateway(dns, max_connections=2, max_connections_per_domain=1)
    ids = [gw.submit(SENDER, [f"u{i}@{d}"]) for i in range(4) for d in ("one.test", "two.test", "three.test")]
    gw.deliver()
    assert all(set(gw.states(m).values()) == {"delivered"} for m in ids)
    assert [len(s.messages) for s in sinks] == [4, 4, 4]
    spans = {s.host: [(m.started, m.finished) for m in s.messages] for s in sinks}
    assert {host: most_at_once(v) for host, v in spans.items()} == {MX1: 1, MX2: 1, MX3: 1}
    # the total limit is reached (so it was really exercised) and never passed
    assert most_at_once([span for v in spans.values() for span in v]) == 2
    assert max(s.peak for s in sinks) == 1  # one connection per domain at a time


def test_opportunistic_tls_is_used_when_offered(
        dnsmasq_factory: DnsmasqFactory, pki: TestPKI, mx_port: int, direct_gateway: DirectGateway,
) -> None:
    """tls: opportunistic uses STARTTLS when the server offers it."""
    dns = dnsmasq_factory(THREE_DOMAINS)
    with _tls_sink(pki, mx_port) as sink:
        gw = direct_gateway(dns)
        mid = gw.submit(SENDER, ["a@one.test"])
        gw.deliver()
        [got] = sink.wait_for(1)
    assert got.tls and got.rcpt_tos == ["a@one.test"]
    assert [c.tls for c in sink.connections] == [True]
    assert gw.states(mid) == {"a@one.test": "delivered"}


def test_opportunistic_tls_falls_back_to_plain_text_when_the_handshake_fails(
        dnsmasq_factory: DnsmasqFactory, pki: TestPKI, mx_port: int, direct_gateway: DirectGateway,
) -> None:
    """A failed TLS handshake under tls: opportunistic is retried in plain text on a new connection."""
    dns = dnsmasq_factory(THREE_DOMAINS)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(pki.cert_file), str(pki.key_file))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1  # the client insists on TLS 1.2 or later
    with RecordingSink(MX1, mx_port, tls_context=ctx) as sink:
        gw = direct_gateway(dns)
        mid = gw.submit(SENDER, ["a@one.test"])
        gw.deliver()
        [got] = sink.wait_for(1)
    assert not got.tls and got.rcpt_tos == ["a@one.test"]  # the second connection, in plain text
    assert gw.states(mid) == {"a@one.test": "delivered"}
