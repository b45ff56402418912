"""Direct delivery through a real dnsmasq and real SMTP servers on several loopback addresses."""

from __future__ import annotations

from tests.direct.aliases import DirectGateway, DnsmasqFactory, MxSinks
from tests.peers.badserver import BadServer, StallingListener

MX1, MX2, MX3 = "127.0.1.21", "127.0.1.22", "127.0.1.23"
SENDER = "sender@origin.test"

TWO_MX = [
    "local=/test/",
    "mx-host=example.test,mx1.example.test,10",
    "mx-host=example.test,mx2.example.test,20",
    f"host-record=mx1.example.test,{MX1}",
    f"host-record=mx2.example.test,{MX2}",
]


def test_delivers_to_the_preferred_mx(
        dnsmasq_factory: DnsmasqFactory, mx_sinks: MxSinks, direct_gateway: DirectGateway,
) -> None:
    """The lowest-preference MX gets the message, with EHLO hostname and the envelope unchanged."""
    dns = dnsmasq_factory(TWO_MX)
    mx1, mx2 = mx_sinks(MX1, MX2)
    gw = direct_gateway(dns)
    mid = gw.submit(SENDER, ["bob@example.test"])
    gw.deliver()
    assert gw.states(mid) == {"bob@example.test": "delivered"}
    [got] = mx1.wait_for(1)
    assert got.rcpt_tos == ["bob@example.test"] and got.mail_from == "sender@origin.test"
    assert got.helo == "gw.test"  # EHLO with `hostname`
    assert mx2.messages == []
    a = gw.last_attempts(mid)["bob@example.test"]
    assert (a.remote_host, a.remote_addr, a.code) == ("mx1.example.test", MX1, 250)
    assert a.route == "direct:example.test"


def test_fails_over_when_the_first_mx_refuses_connections(
        dnsmasq_factory: DnsmasqFactory, mx_sinks: MxSinks, direct_gateway: DirectGateway,
) -> None:
    """A refused connection to the best MX fails over to the next one."""
    dns = dnsmasq_factory(TWO_MX)
    (mx2,) = mx_sinks(MX2)  # nothing listens on mx1: connection refused
    gw = direct_gateway(dns)
    mid = gw.submit(SENDER, ["bob@example.test"])
    gw.deliver()
    assert gw.states(mid) == {"bob@example.test": "delivered"}
    assert len(mx2.wait_for(1)) == 1
    assert gw.last_attempts(mid)["bob@example.test"].remote_host == "mx2.example.test"


def test_fails_over_when_the_first_mx_greets_421(
        dnsmasq_factory: DnsmasqFactory, mx_sinks: MxSinks, mx_port: int, direct_gateway: DirectGateway,
) -> None:
    """A 421 greeting from the best MX fails over to the next one."""
    dns = dnsmasq_factory(TWO_MX)
    (mx2,) = mx_sinks(MX2)
    with BadServer("greet_then_close", MX1, mx_port, greeting="421 4.3.2 mx1 is too busy") as busy:
        gw = direct_gateway(dns)
        mid = gw.submit(SENDER, ["bob@example.test"])
        gw.deliver()
    assert busy.connections == 1
    assert gw.states(mid) == {"bob@example.test": "delivered"}
    assert len(mx2.wait_for(1)) == 1


def test_fails_over_when_the_first_mx_never_greets(
        dnsmasq_factory: DnsmasqFactory, mx_sinks: MxSinks, mx_port: int, direct_gateway: DirectGateway,
) -> None:
    """A best MX that never greets is given up after timeout (1 s); the next one delivers."""
    dns = dnsmasq_factory(TWO_MX)
    (mx2,) = mx_sinks(MX2)
    with BadServer("hang_after_connect", MX1, mx_port):
        gw = direct_gateway(dns, timeout="1s")
        mid = gw.submit(SENDER, ["bob@example.test"])
        took = gw.deliver()
    assert gw.states(mid) == {"bob@example.test": "delivered"}
    assert len(mx2.wait_for(1)) == 1
    assert took < 10


def test_every_mx_down_defers_with_the_reasons(dnsmasq_factory: DnsmasqFactory, direct_gateway: DirectGateway) -> None:
    """No MX answers: 451 4.4.1, the text names every MX host tried."""
    dns = dnsmasq_factory(TWO_MX)
    gw = direct_gateway(dns)
    mid = gw.submit(SENDER, ["bob@example.test"])
    gw.deliver()
    assert gw.states(mid) == {"bob@example.test": "deferred"}
    a = gw.last_attempts(mid)["bob@example.test"]
    assert (a.code, a.enhanced) == (451, "4.4.1"), a.text
    assert "mx2.example.test" in a.text and "mx1.example.test" in a.text


def test_max_hosts_per_attempt_caps_the_hosts_tried(
        dnsmasq_factory: DnsmasqFactory, mx_sinks: MxSinks, direct_gateway: DirectGateway,
) -> None:
    """max_hosts_per_attempt 1: only the best (dead) MX is tried, the second is left for later."""
    dns = dnsmasq_factory(TWO_MX)
    (mx2,) = mx_sinks(MX2)
    gw = direct_gateway(dns, max_hosts_per_attempt=1)
    mid = gw.submit(SENDER, ["bob@example.test"])
    gw.deliver()
    assert gw.states(mid) == {"bob@example.test": "deferred"}
    assert mx2.messages == []


def test_implicit_mx_uses_the_domains_address(
        dnsmasq_factory: DnsmasqFactory, mx_sinks: MxSinks, direct_gateway: DirectGateway,
) -> None:
    """A domain without MX records but with an address is its own (implicit) MX."""
    dns = dnsmasq_factory(["local=/test/", f"host-record=implicit.test,{MX3}"])
    (sink,) = mx_sinks(MX3)
    gw = direct_gateway(dns)
    mid = gw.submit(SENDER, ["carol@implicit.test"])
    gw.deliver()
    assert gw.states(mid) == {"carol@implicit.test": "delivered"}
    assert sink.wait_for(1)[0].rcpt_tos == ["carol@implicit.test"]
    a = gw.last_attempts(mid)["carol@implicit.test"]
    assert (a.remote_host, a.remote_addr) == ("implicit.test", MX3)


def test_unreachable_ipv6_address_falls_back_to_ipv4_quickly(
        dnsmasq_factory: DnsmasqFactory, mx_sinks: MxSinks, mx_port: int, direct_gateway: DirectGateway,
) -> None:
    """A black-holed AAAA does not stall delivery: IPv4 is tried well before connect_timeout."""
    dns = dnsmasq_factory(["local=/test/", "mx-host=dual.test,mx.dual.test,10",
                           f"host-record=mx.dual.test,{MX1},::1"])
    (sink,) = mx_sinks(MX1)
    with StallingListener("::1", mx_port):  # connects to [::1] hang: a black-holed AAAA
        gw = direct_gateway(dns, connect_timeout="30s")
        mid = gw.submit(SENDER, ["dave@dual.test"])
        took = gw.deliver()
    assert gw.states(mid) == {"dave@dual.test": "delivered"}
    assert gw.last_attempts(mid)["dave@dual.test"].remote_addr == MX1
    assert len(sink.wait_for(1)) == 1
    assert took < 10, f"an unreachable AAAA stalled delivery for {took:.1f}s"


def test_refused_ipv6_address_falls_back_to_ipv4(
        dnsmasq_factory: DnsmasqFactory, mx_sinks: MxSinks, direct_gateway: DirectGateway,
) -> None:
    """A refused connection on the AAAA address falls back to the A address."""
    dns = dnsmasq_factory(["local=/test/", "mx-host=dual.test,mx.dual.test,10",
                           f"host-record=mx.dual.test,{MX1},::1"])
    (sink,) = mx_sinks(MX1)
    gw = direct_gateway(dns)
    mid = gw.submit(SENDER, ["dave@dual.test"])
    gw.deliver()
    assert gw.states(mid) == {"dave@dual.test": "delivered"}
    assert len(sink.wait_for(1)) == 1


def test_ipv6_mx_is_used(dnsmasq_factory: DnsmasqFactory, mx_port: int, direct_gateway: DirectGateway) -> None:
    """An MX with only an IPv6 address is delivered to over IPv6."""
    from tests.peers.sink import RecordingSink

    dns = dnsmasq_factory(["local=/test/", "mx-host=six.test,mx.six.test,10", "host-record=mx.six.test,::1"])
    with RecordingSink("::1", mx_port) as sink:
        gw = direct_gateway(dns)
        mid = gw.submit(SENDER, ["erin@six.test"])
        gw.deliver()
        assert len(sink.wait_for(1)) == 1
    assert gw.last_attempts(mid)["erin@six.test"].remote_addr == "::1"
