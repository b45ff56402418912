"""DNS outcomes mapped right: null MX and NXDOMAIN bounce at once; SERVFAIL and time-outs defer."""

from __future__ import annotations

from pathlib import Path

from tests.direct.aliases import DirectGateway, DnsmasqFactory, MxSinks

MX1 = "127.0.1.21"
SENDER = "sender@origin.test"


def test_null_mx_bounces_at_once(
        dnsmasq_factory: DnsmasqFactory, mx_sinks: MxSinks, direct_gateway: DirectGateway,
) -> None:
    """A null MX (RFC 7505) fails the recipient at once with 556 5.1.10, even if the domain has an address."""
    dns = dnsmasq_factory(["local=/test/", "dns-rr=nullmx.test,15,000000", f"host-record=nullmx.test,{MX1}"])
    (sink,) = mx_sinks(MX1)  # the domain has an address; a null MX must still win
    gw = direct_gateway(dns)
    mid = gw.submit(SENDER, ["nobody@nullmx.test"])
    gw.deliver()
    assert gw.states(mid) == {"nobody@nullmx.test": "failed"}
    a = gw.last_attempts(mid)["nobody@nullmx.test"]
    assert (a.code, a.enhanced) == (556, "5.1.10")
    assert len(gw.attempts(message=mid)) == 1  # one attempt, no retry
    assert sink.messages == []


def test_nxdomain_bounces(dnsmasq_factory: DnsmasqFactory, direct_gateway: DirectGateway) -> None:
    """A domain that does not exist (NXDOMAIN) fails the recipient with 550 5.1.2."""
    dns = dnsmasq_factory(["local=/test/"])
    gw = direct_gateway(dns)
    mid = gw.submit(SENDER, ["nobody@no-such-domain.test"])
    gw.deliver()
    assert gw.states(mid) == {"nobody@no-such-domain.test": "failed"}
    a = gw.last_attempts(mid)["nobody@no-such-domain.test"]
    assert (a.code, a.enhanced) == (550, "5.1.2")
    assert "NXDOMAIN" in a.text


def test_servfail_defers_and_emits_an_event(dnsmasq_factory: DnsmasqFactory, direct_gateway: DirectGateway) -> None:
    """SERVFAIL is temporary (451 4.4.3) and raises one dns.failure event naming the domain."""
    dns = dnsmasq_factory(["local=/test/"], servfail_domains=["broken.test"])
    gw = direct_gateway(dns)
    mid = gw.submit(SENDER, ["someone@broken.test"])
    gw.deliver()
    assert gw.states(mid) == {"someone@broken.test": "deferred"}
    a = gw.last_attempts(mid)["someone@broken.test"]
    assert (a.code, a.enhanced) == (451, "4.4.3")
    assert "SERVFAIL" in a.text
    [event] = gw.events("dns.failure")
    assert event.level in ("warning", "error") and "broken.test" in event.text and "SERVFAIL" in event.text


def test_dns_timeout_defers_within_dns_timeout(dnsmasq_factory: DnsmasqFactory, direct_gateway: DirectGateway) -> None:
    """A DNS server that never answers: 451 4.4.3 after dns_timeout (1 s), not the resolver's default."""
    dns = dnsmasq_factory(["local=/test/"], timeout_domains=["slow.test"])
    gw = direct_gateway(dns, dns_timeout="1s")
    mid = gw.submit(SENDER, ["someone@slow.test"])
    took = gw.deliver()
    assert gw.states(mid) == {"someone@slow.test": "deferred"}
    a = gw.last_attempts(mid)["someone@slow.test"]
    assert (a.code, a.enhanced) == (451, "4.4.3")
    assert "timed out" in a.text
    assert took < 5
    [event] = gw.events("dns.failure")
    assert "slow.test" in event.text and "timed out" in event.text


def test_refused_query_defers(dnsmasq_factory: DnsmasqFactory, direct_gateway: DirectGateway) -> None:
    """A REFUSED answer is temporary: 451 4.4.3."""
    dns = dnsmasq_factory(["local=/test/"])
    gw = direct_gateway(dns)
    mid = gw.submit(SENDER, ["someone@elsewhere.example"])
    gw.deliver()
    assert gw.states(mid) == {"someone@elsewhere.example": "deferred"}
    a = gw.last_attempts(mid)["someone@elsewhere.example"]
    assert (a.code, a.enhanced) == (451, "4.4.3") and "REFUSED" in a.text


def test_domain_without_mx_or_address_bounces(dnsmasq_factory: DnsmasqFactory, direct_gateway: DirectGateway) -> None:
    """A name with neither MX nor A/AAAA records fails the recipient with 550 5.1.2."""
    dns = dnsmasq_factory(["local=/test/", "txt-record=empty.test,hello"])
    gw = direct_gateway(dns)
    mid = gw.submit(SENDER, ["x@empty.test"])
    gw.deliver()
    assert gw.states(mid) == {"x@empty.test": "failed"}
    a = gw.last_attempts(mid)["x@empty.test"]
    assert (a.code, a.enhanced) == (550, "5.1.2")


def test_mx_list_leading_back_to_this_gateway_is_a_loop(
        dnsmasq_factory: DnsmasqFactory, mx_sinks: MxSinks, direct_gateway: DirectGateway,
) -> None:
    """When our own hostname is the best MX the mail would loop: 554 5.4.6, nothing sent."""
    dns = dnsmasq_factory([
        "local=/test/",
        "mx-host=loop.test,gw.test,10",           # our own hostname is the best MX
        "mx-host=loop.test,backup.loop.test,20",
        f"host-record=gw.test,{MX1}",
        "host-record=backup.loop.test,127.0.1.22",
    ])
    mx_sinks(MX1, "127.0.1.22")
    gw = direct_gateway(dns)
    mid = gw.submit(SENDER, ["x@loop.test"])
    gw.deliver()
    assert gw.states(mid) == {"x@loop.test": "failed"}
    a = gw.last_attempts(mid)["x@loop.test"]
    assert (a.code, a.enhanced) == (554, "5.4.6") and "loops back to myself" in a.text


def test_mx_at_own_listen_address_is_a_loop(
        dnsmasq_factory: DnsmasqFactory, direct_gateway: DirectGateway, workdir: Path,
) -> None:
    """An MX host whose address and port are one of our own listeners is a loop: 554 5.4.6."""
    from tests.peers.net import free_port

    port = free_port("127.0.1.30")
    dns = dnsmasq_factory(["local=/test/", "mx-host=self.test,relay.self.test,10",
                           "host-record=relay.self.test,127.0.1.30"])
    gw = direct_gateway(dns, port=port, settings={"listen": [f"127.0.1.30:{port}"]})
    mid = gw.submit(SENDER, ["x@self.test"])
    gw.deliver()
    assert gw.states(mid) == {"x@self.test": "failed"}
    a = gw.last_attempts(mid)["x@self.test"]
    assert (a.code, a.enhanced) == (554, "5.4.6") and "loops back to myself" in a.text


def test_backup_mx_is_used_when_this_gateway_is_a_worse_mx(
        dnsmasq_factory: DnsmasqFactory, mx_sinks: MxSinks, direct_gateway: DirectGateway,
) -> None:
    """We are a backup MX: mail goes to the better (primary) MX, not to ourselves."""
    dns = dnsmasq_factory([
        "local=/test/",
        "mx-host=backup.test,primary.backup.test,10",
        "mx-host=backup.test,gw.test,20",
        f"host-record=primary.backup.test,{MX1}",
        "host-record=gw.test,127.0.1.22",
    ])
    (primary,) = mx_sinks(MX1)
    gw = direct_gateway(dns)
    mid = gw.submit(SENDER, ["x@backup.test"])
    gw.deliver()
    assert gw.states(mid) == {"x@backup.test": "delivered"}
    assert [m.rcpt_tos for m in primary.wait_for(1)] == [["x@backup.test"]]
