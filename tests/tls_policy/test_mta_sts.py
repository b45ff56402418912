"""MTA-STS (RFC 8461): the TXT record in a real dnsmasq, the policy on a real HTTPS server with the test CA.

Every ``mta-sts.DOMAIN`` resolves (through the same DNS as the MX lookups) to the policy
server on 127.0.1.50, reached on its test port (``mta_sts_port``). The MX servers are the
hosts of world.py (``a`` good certificate, ``d`` expired, ``w`` wrong name, ``o`` untrusted
CA, ``s`` behind a relay that strips STARTTLS).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.peers.dnsmasq import DnsmasqPeer
from tests.peers.fixtures import DnsmasqFactory
from tests.peers.harness import SyncHarness
from tests.peers.https_server import Document, HttpsPeer, policy_text
from tests.peers.sink import RecordingSink

from .conftest import SENDER, START, Gateway, MxServers, deliver_each, deliver_one
from .world import HOSTS, HTTPS_ADDRESS, mx


def records(policies: dict[str, tuple[str | None, list[str]]]) -> list[str]:
    """dnsmasq lines: every MX host; per domain its MX hosts (in order) and, with an id, its _mta-sts TXT."""
    lines = ["local=/test/", *(f"host-record={mx(h)},{a}" for h, a in HOSTS.items())]
    for domain, (ident, hosts) in policies.items():
        lines += [f"mx-host={domain},{mx(h)},{10 * (i + 1)}" for i, h in enumerate(hosts)]
        lines.append(f"host-record=mta-sts.{domain},{HTTPS_ADDRESS}")
        if ident is not None:
            lines.append(f'txt-record=_mta-sts.{domain},"v=STSv1; id={ident}"')
    return lines


def _server(dns: DnsmasqPeer) -> str:
    return f"{dns.address}:{dns.port}"


StsWorld = Callable[..., tuple[dict[str, RecordingSink], SyncHarness]]


@pytest.fixture
def sts_world(dnsmasq_factory: DnsmasqFactory, mx_servers: MxServers, gateway: Gateway) -> StsWorld:
    """``sts_world({domain: (TXT id or None, MX hosts)}, **direct_options)`` -> (host -> its sink, gateway).

    Starts a dnsmasq with those ``records``, the MX servers of every host they name, and a
    gateway resolving through that dnsmasq.
    """
    def make(policies: dict[str, tuple[str | None, list[str]]],
             **options: object) -> tuple[dict[str, RecordingSink], SyncHarness]:
        dns = dnsmasq_factory(records(policies))
        sinks = mx_servers(*dict.fromkeys(host for _, hosts in policies.values() for host in hosts))
        return sinks, gateway(_server(dns), **options)

    return make


def test_enforce_delivers_with_a_verified_certificate_and_caches_the_policy(
        https_peer: HttpsPeer, sts_world: StsWorld) -> None:
    """enforce: TLS with a certificate valid for the MX name (test CA); the policy is fetched once."""
    https_peer.policy("enforce.sts.test", policy_text("enforce", ["*.hosts.test"]))
    sinks, gw = sts_world({"enforce.sts.test": ("20270115", ["a"])})
    for rcpt in ("bob@enforce.sts.test", "carol@enforce.sts.test"):
        text = deliver_one(gw, rcpt, "delivered").text
        assert "[tls: policy mta-sts, TLSv1." in text and "certificate verified (CA chain and name)" in text
    assert all(m.tls for m in sinks["a"].wait_for(2))
    assert https_peer.fetches("enforce.sts.test") == 1


def test_enforce_refuses_bad_certificates_and_unlisted_hosts(
        https_peer: HttpsPeer, sts_world: StsWorld) -> None:
    """enforce: an MX the policy does not list is not connected to; expired, wrongly named and untrusted
    certificates are refused, each counted by its RFC 8460 type; the listed host with a good one delivers."""
    https_peer.policy("nolist.sts.test", policy_text("enforce", ["d.hosts.test", "w.hosts.test", "o.hosts.test",
                                                                 "a.hosts.test"]))
    sinks, gw = sts_world({"nolist.sts.test": ("1", ["n", "d", "w", "o", "a"])})
    assert deliver_one(gw, "bob@nolist.sts.test", "delivered").remote_host == "a.hosts.test"
    assert sinks["n"].connections == []
    assert sinks["d"].messages == sinks["w"].messages == sinks["o"].messages == []
    failures = [(e.kind, e.data["host"]) for e in gw.run(gw.h.events("tls.failure"))]
    assert failures == [
        ("tls.failure.validation-failure", "n.hosts.test"),
        ("tls.failure.certificate-expired", "d.hosts.test"),
        ("tls.failure.certificate-host-mismatch", "w.hosts.test"),
        ("tls.failure.certificate-not-trusted", "o.hosts.test"),
    ]


def test_enforce_with_no_usable_host_defers(
        https_peer: HttpsPeer, sts_world: StsWorld) -> None:
    """enforce: an attacker stripping STARTTLS, or only unlisted hosts: deferred (4.7.x), nothing sent."""
    https_peer.policy("enforce-strip.sts.test", policy_text("enforce", ["s.hosts.test"]))
    https_peer.policy("enforce-unlisted.sts.test", policy_text("enforce", ["mx.elsewhere.test"]))
    sinks, gw = sts_world({"enforce-strip.sts.test": ("1", ["s"]), "enforce-unlisted.sts.test": ("1", ["a"])})
    attempts = deliver_each(gw, {"bob@enforce-strip.sts.test": "deferred", "bob@enforce-unlisted.sts.test": "deferred"})
    a = attempts["bob@enforce-strip.sts.test"]
    assert (a.code, a.enhanced) == (451, "4.7.4") and "policy mta-sts" in a.text
    a = attempts["bob@enforce-unlisted.sts.test"]
    assert (a.code, a.enhanced) == (451, "4.7.5") and "not an mx of the policy" in a.text
    assert sinks["s"].messages == [] and sinks["a"].connections == []


def test_testing_mode_delivers_and_reports(
        https_peer: HttpsPeer, sts_world: StsWorld) -> None:
    """testing: an expired certificate does not stop delivery (opportunistic TLS), but is reported."""
    https_peer.policy("testing.sts.test", policy_text("testing", ["*.hosts.test"]))
    sinks, gw = sts_world({"testing.sts.test": ("1", ["d"])})
    text = deliver_one(gw, "bob@testing.sts.test", "delivered").text
    assert sinks["d"].wait_for(1)[0].tls
    assert "policy mta-sts, TLSv1." in text and "not trusted (reported only)" in text and "expired" in text
    [event] = gw.run(gw.h.events("tls.failure"))
    assert event.kind == "tls.failure.certificate-expired" and event.data["enforced"] is False


def test_mode_none_and_no_policy_are_opportunistic(
        https_peer: HttpsPeer, sts_world: StsWorld) -> None:
    """mode none, and a domain without the TXT record: opportunistic TLS, unverified certificates accepted."""
    https_peer.policy("none.sts.test", policy_text("none", []))
    _, gw = sts_world({"none.sts.test": ("1", ["o"]), "nopolicy.sts.test": (None, ["o"])})
    for a in deliver_each(gw, {"bob@none.sts.test": "delivered", "bob@nopolicy.sts.test": "delivered"}).values():
        assert "[tls: policy opportunistic, TLSv1." in a.text
    assert https_peer.fetches("nopolicy.sts.test") == 0
    assert gw.run(gw.h.events("tls.failure")) == []


def test_policies_that_cannot_be_had_leave_the_domain_without_policy(
        https_peer: HttpsPeer, sts_world: StsWorld) -> None:
    """No policy file (404), one too large, one not valid, one from a server whose certificate is not for
    its name, one too slow: delivered opportunistically (no cached policy), each failure reported."""
    https_peer.documents[("mta-sts.big.sts.test", "/.well-known/mta-sts.txt")] = Document(
        policy_text("enforce", ["a.hosts.test"]).encode() + b"#" * 70_000)
    https_peer.policy("broken.sts.test", "version: STSv2\r\nmode: enforce\r\nmx: a.hosts.test\r\nmax_age: 60\r\n")
    https_peer.policy("slow.sts.test", policy_text("enforce", ["a.hosts.test"]), delay=3.0)
    domains = ["missing", "big", "broken", "badcert", "slow"]
    _, gw = sts_world({f"{d}.sts.test": ("1", ["o"]) for d in domains}, timeout="1s")
    deliver_each(gw, {f"bob@{d}.sts.test": "delivered" for d in domains})
    kinds = {e.data["domain"]: e.kind for e in gw.run(gw.h.events("tls.failure"))}
    assert kinds == {
        "missing.sts.test": "tls.failure.sts-policy-fetch-error",
        "big.sts.test": "tls.failure.sts-policy-fetch-error",
        "broken.sts.test": "tls.failure.sts-policy-invalid",
        "badcert.sts.test": "tls.failure.sts-webpki-invalid",
        "slow.sts.test": "tls.failure.sts-policy-fetch-error",
    }


def test_cache_is_durable_refreshed_on_id_change_and_after_max_age(
        dnsmasq_factory: DnsmasqFactory, https_peer: HttpsPeer, mx_servers: MxServers, gateway: Gateway) -> None:
    """The policy is kept in the queue database: a restarted gateway does not fetch it again; a new TXT id
    fetches the new policy; so does the same id once ``max_age`` has passed; and while a cached policy is
    valid, removing the TXT record (what an attacker on the path could do) does not remove the policy."""
    domain, rcpt = "changing.sts.test", "bob@changing.sts.test"
    https_peer.policy(domain, policy_text("enforce", ["a.hosts.test"], max_age=3600))
    first_dns = dnsmasq_factory(records({domain: ("1", ["a"])}))
    sinks = mx_servers("a", "b")

    gw = gateway(_server(first_dns))
    deliver_one(gw, rcpt, "delivered")
    assert https_peer.fetches(domain) == 1
    gw.close()

    again = gateway(_server(first_dns), start=START + 60)  # the same state folder: a restart
    deliver_one(again, rcpt, "delivered")
    assert https_peer.fetches(domain) == 1  # from the queue database
    again.close()

    # The TXT record is gone and the MX now points to b, which the cached policy does not list.
    stripped_dns = dnsmasq_factory(records({domain: (None, ["b"])}))
    attacked = gateway(_server(stripped_dns), start=START + 120)
    assert "not an mx of the policy" in deliver_one(attacked, rcpt, "deferred").text
    assert sinks["b"].connections == []
    attacked.close()

    # A new id: the new policy (testing, listing b) is fetched and applies.
    https_peer.policy(domain, policy_text("testing", ["b.hosts.test"], max_age=3600))
    new_dns = dnsmasq_factory(records({domain: ("2", ["b"])}))
    changed = gateway(_server(new_dns), start=START + 180)
    deliver_one(changed, rcpt, "delivered")
    assert https_peer.fetches(domain) == 2
    assert len(sinks["b"].wait_for(1)) == 1

    # Same id, an hour later: max_age has passed, the policy is fetched again.
    changed.clock.advance(3600)
    deliver_one(changed, rcpt, "delivered")
    assert https_peer.fetches(domain) == 3


def test_a_failed_fetch_is_not_repeated_for_every_delivery(
        https_peer: HttpsPeer, sts_world: StsWorld) -> None:
    """The policy server of a domain is down (404 here): the next deliveries in the following 5 minutes do not
    ask it again (each would wait for it); after that it is tried again, and its policy then applies."""
    domain = "flaky.sts.test"
    _, gw = sts_world({domain: ("1", ["a"])})
    for rcpt in ("bob@flaky.sts.test", "carol@flaky.sts.test"):
        deliver_one(gw, rcpt, "delivered")
    assert https_peer.fetches(domain) == 1
    assert len(gw.run(gw.h.events("tls.failure.sts-policy-fetch-error"))) == 1

    https_peer.policy(domain, policy_text("enforce", ["a.hosts.test"]))
    gw.clock.advance(301)
    mid = gw.submit(SENDER, ["dave@flaky.sts.test"])
    gw.deliver()
    assert https_peer.fetches(domain) == 2
    assert "policy mta-sts" in gw.last_attempts(mid)["dave@flaky.sts.test"].text
