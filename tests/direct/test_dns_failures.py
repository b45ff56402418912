"""DNS outcomes mapped right: null MX and NXDOMAIN bounce at once; SERVFAIL and time-outs defer."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pytest

from mailpipe.core.queue import Attempt
from tests.direct.aliases import DirectGateway, DnsmasqFactory, MxSinks
from tests.peers.harness import SyncHarness
from tests.peers.net import free_port

MX1 = "127.0.1.21"
SENDER = "sender@origin.test"


class Once(NamedTuple):
    """One message to one recipient after one delivery run."""

    mid: str
    state: str
    attempt: Attempt
    took: float


def deliver_once(gw: SyncHarness, recipient: str) -> Once:
    """Queue one message to ``recipient`` and run every delivery due; its state and latest attempt."""
    mid = gw.submit(SENDER, [recipient])
    took = gw.deliver()
    return Once(mid, gw.states(mid)[recipient], gw.last_attempts(mid)[recipient], took)


@pytest.mark.parametrize(("records", "recipient", "state", "reply", "text"), [
    pytest.param(["local=/test/"], "nobody@no-such-domain.test", "failed", (550, "5.1.2"), "NXDOMAIN",
                 id="nxdomain-bounces"),
    pytest.param(["local=/test/"], "someone@elsewhere.example", "deferred", (451, "4.4.3"), "REFUSED",
                 id="refused-query-defers"),
    pytest.param(["local=/test/", "txt-record=empty.test,hello"], "x@empty.test", "failed", (550, "5.1.2"), "",
                 id="no-mx-nor-address-bounces"),
])
def test_dns_answer_decides_the_outcome(
        dnsmasq_factory: DnsmasqFactory, direct_gateway: DirectGateway,
        records: list[str], recipient: str, state: str, reply: tuple[int, str], text: str,
) -> None:
    """A domain that does not exist (NXDOMAIN) and a name with neither MX nor A/AAAA records fail the recipient
    with 550 5.1.2; a REFUSED answer is temporary: 451 4.4.3."""
    once = deliver_once(direct_gateway(dnsmasq_factory(records)), recipient)
    assert once.state == state
    assert (once.attempt.code, once.attempt.enhanced) == reply and text in once.attempt.text


def test_null_mx_bounces_at_once(
        dnsmasq_factory: DnsmasqFactory, mx_sinks: MxSinks, direct_gateway: DirectGateway,
) -> None:
    """A null MX (RFC 7505) fails the recipient at once with 556 5.1.10, even if the domain has an address."""
    dns = dnsmasq_factory(["local=/test/", "dns-rr=nullmx.test,15,000000", f"host-record=nullmx.test,{MX1}"])
    (sink,) = mx_sinks(MX1)  # the domain has an address; a null MX must still win
    gw = direct_gateway(dns)
    once = deliver_once(gw, "nobody@nullmx.test")
    assert once.state == "failed"
    assert (once.attempt.code, once.attempt.enhanced) == (556, "5.1.10")
    assert len(gw.attempts(message=once.mid)) == 1  # one attempt, no retry
    assert sink.messages == []


def test_servfail_defers_and_emits_an_event(dnsmasq_factory: DnsmasqFactory, direct_gateway: DirectGateway) -> None:
    """SERVFAIL is temporary (451 4.4.3) and raises one dns.failure event naming the domain."""
    gw = direct_gateway(dnsmasq_factory(["local=/test/"], servfail_domains=["broken.test"]))
    once = deliver_once(gw, "someone@broken.test")
    assert once.state == "deferred"
    assert (once.attempt.code, once.attempt.enhanced) == (451, "4.4.3") and "SERVFAIL" in once.attempt.text
    [event] = gw.events("dns.failure")
    assert event.level in ("warning", "error") and "broken.test" in event.text and "SERVFAIL" in event.text


def test_dns_timeout_defers_within_dns_timeout(dnsmasq_factory: DnsmasqFactory, direct_gateway: DirectGateway) -> None:
    """A DNS server that never answers: 451 4.4.3 after dns_timeout (1 s), not the resolver's default."""
    gw = direct_gateway(dnsmasq_factory(["local=/test/"], timeout_domains=["slow.test"]), dns_timeout="1s")
    once = deliver_once(gw, "someone@slow.test")
    assert once.state == "deferred"
    assert (once.attempt.code, once.attempt.enhanced) == (451, "4.4.3") and "timed out" in once.attempt.text
    assert once.took < 5
    [event] = gw.events("dns.failure")
    assert "slow.test" in event.text and "timed out" in event.text


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
    once = deliver_once(direct_gateway(dns), "x@loop.test")
    assert once.state == "failed"
    assert (once.attempt.code, once.attempt.enhanced) == (554, "5.4.6") and "loops back to myself" in once.attempt.text


def test_mx_at_own_listen_address_is_a_loop(
        dnsmasq_factory: DnsmasqFactory, direct_gateway: DirectGateway, workdir: Path,
) -> None:
    """An MX host whose address and port are one of our own listeners is a loop: 554 5.4.6."""
    port = free_port("127.0.1.30")
    dns = dnsmasq_factory(["local=/test/", "mx-host=self.test,relay.self.test,10",
                           "host-record=relay.self.test,127.0.1.30"])
    gw = direct_gateway(dns, port=port, settings={"listen": [f"127.0.1.30:{port}"]})
    once = deliver_once(gw, "x@self.test")
    assert once.state == "failed"
    assert (once.attempt.code, once.attempt.enhanced) == (554, "5.4.6") and "loops back to myself" in once.attempt.text


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
    assert deliver_once(direct_gateway(dns), "x@backup.test").state == "delivered"
    assert [m.rcpt_tos for m in primary.wait_for(1)] == [["x@backup.test"]]
