"""MTA-STS (RFC 8461): the TXT record in a real dnsmasq, the policy on a real HTTPS server with the test CA.

Every ``mta-sts.DOMAIN`` resolves (through the same DNS as the MX lookups) to the policy
server on 127.0.1.50, reached on its test port (``mta_sts_port``). The MX servers are the
hosts of world.py (``a`` good certificate, ``d`` expired, ``w`` wrong name, ``o`` untrusted
CA, ``s`` behind a relay that strips STARTTLS).
"""

from __future__ import annotations

from tests.peers.dnsmasq import DnsmasqPeer
from tests.peers.fixtures import DnsmasqFactory
from tests.peers.https_server import Document, HttpsPeer, policy_text

from .conftest import SENDER, START, Gateway, MxServers
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


def test_enforce_delivers_with_a_verified_certificate_and_caches_the_policy(
        dnsmasq_factory: DnsmasqFactory, https_peer: HttpsPeer, mx_servers: MxServers, gateway: Gateway) -> None:
    """enforce: TLS with a certificate valid for the MX name (test CA); the policy is fetched once."""
    https_peer.policy("enforce.sts.test", policy_text("enforce", ["*.hosts.test"]))
    dns = dnsmasq_factory(records({"enforce.sts.test": ("20270115", ["a"])}))
    sinks = mx_servers("a")
    gw = gateway(_server(dns))
    first = gw.submit(SENDER, ["bob@enforce.sts.test"])
    gw.deliver()
    second = gw.submit(SENDER, ["carol@enforce.sts.test"])
    gw.deliver()
    for mid, rcpt in ((first, "bob@enforce.sts.test"), (second, "carol@enforce.sts.test")):
        assert gw.states(mid) == {rcpt: "delivered"}
        text = gw.last_attempts(mid)[rcpt].text
        assert "[tls: policy mta-sts, TLSv1." in text and "certificate verified (CA chain and name)" in text
    assert all(m.tls for m in sinks["a"].wait_for(2))
    assert https_peer.fetches("enforce.sts.test") == 1


def test_enforce_refuses_bad_certificates_and_unlisted_hosts(
        dnsmasq_factory: DnsmasqFactory, https_peer: HttpsPeer, mx_servers: MxServers, gateway: Gateway) -> None:
    """enforce: an MX the policy does not list is not connected to; expired, wrongly named and untrusted
    certificates are refused, each counted by its RFC 8460 type; the listed host with a good one delivers."""
    https_peer.policy("nolist.sts.test", policy_text("enforce", ["d.hosts.test", "w.hosts.test", "o.hosts.test",
                                                                 "a.hosts.test"]))
    dns = dnsmasq_factory(records({"nolist.sts.test": ("1", ["n", "d", "w", "o", "a"])}))
    sinks = mx_servers("n", "d", "w", "o", "a")
    gw = gateway(_server(dns))
    mid = gw.submit(SENDER, ["bob@nolist.sts.test"])
    gw.deliver()
    assert gw.states(mid) == {"bob@nolist.sts.test": "delivered"}
    assert gw.last_attempts(mid)["bob@nolist.sts.test"].remote_host == "a.hosts.test"
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
        dnsmasq_factory: DnsmasqFactory, https_peer: HttpsPeer, mx_servers: MxServers, gateway: Gateway) -> None:
    """enforce: an attacker stripping STARTTLS, or only unlisted hosts: deferred (4.7.x), nothing sent."""
    https_peer.policy("enforce-strip.sts.test", policy_text("enforce", ["s.hosts.test"]))
    https_peer.policy("enforce-unlisted.sts.test", policy_text("enforce", ["mx.elsewhere.test"]))
    dns = dnsmasq_factory(records({"enforce-strip.sts.test": ("1", ["s"]),
                                   "enforce-unlisted.sts.test": ("1", ["a"])}))
    sinks = mx_servers("s", "a")
    gw = gateway(_server(dns))
    stripped = gw.submit(SENDER, ["bob@enforce-strip.sts.test"])
    unlisted = gw.submit(SENDER, ["bob@enforce-unlisted.sts.test"])
    gw.deliver()
    assert gw.states(stripped) == {"bob@enforce-strip.sts.test": "deferred"}
    a = gw.last_attempts(stripped)["bob@enforce-strip.sts.test"]
    assert (a.code, a.enhanced) == (451, "4.7.4") and "policy mta-sts" in a.text
    assert gw.states(unlisted) == {"bob@enforce-unlisted.sts.test": "deferred"}
    a = gw.last_attempts(unlisted)["bob@enforce-unlisted.sts.test"]
    assert (a.code, a.enhanced) == (451, "4.7.5") and "not an mx of the policy" in a.text
    assert sinks["s"].messages == [] and sinks["a"].connections == []


def test_testing_mode_delivers_and_reports(
        dnsmasq_factory: DnsmasqFactory, https_peer: HttpsPeer, mx_servers: MxServers, gateway: Gateway) -> None:
    """testing: an expired certificate does not stop delivery (opportunistic TLS), but is reported."""
    https_peer.policy("testing.sts.test", policy_text("testing", ["*.hosts.test"]))
    dns = dnsmasq_factory(records({"testing.sts.test": ("1", ["d"])}))
    sinks = mx_servers("d")
    gw = gateway(_server(dns))
    mid = gw.submit(SENDER, ["bob@testing.sts.test"])
    gw.deliver()
    assert gw.states(mid) == {"bob@testing.sts.test": "delivered"}
    assert sinks["d"].wait_for(1)[0].tls
    text = gw.last_attempts(mid)["bob@testing.sts.test"].text
    assert "policy mta-sts, TLSv1." in text and "not trusted (reported only)" in text and "expired" in text
    [event] = gw.run(gw.h.events("tls.failure"))
    assert event.kind == "tls.failure.certificate-expired" and event.data["enforced"] is False


def test_mode_none_and_no_policy_are_opportunistic(
        dnsmasq_factory: DnsmasqFactory, https_peer: HttpsPeer, mx_servers: MxServers, gateway: Gateway) -> None:
    """mode none, and a domain without the TXT record: opportunistic TLS, unverified certificates accepted."""
    https_peer.policy("none.sts.test", policy_text("none", []))
    dns = dnsmasq_factory(records({"none.sts.test": ("1", ["o"]), "nopolicy.sts.test": (None, ["o"])}))
    mx_servers("o")
    gw = gateway(_server(dns))
    none = gw.submit(SENDER, ["bob@none.sts.test"])
    nopolicy = gw.submit(SENDER, ["bob@nopolicy.sts.test"])
    gw.deliver()
    for mid, rcpt in ((none, "bob@none.sts.test"), (nopolicy, "bob@nopolicy.sts.test")):
        assert gw.states(mid) == {rcpt: "delivered"}
        assert "[tls: policy opportunistic, TLSv1." in gw.last_attempts(mid)[rcpt].text
    assert https_peer.fetches("nopolicy.sts.test") == 0
    assert gw.run(gw.h.events("tls.failure")) == []


def test_policies_that_cannot_be_had_leave_the_domain_without_policy(
        dnsmasq_factory: DnsmasqFactory, https_peer: HttpsPeer, mx_servers: MxServers, gateway: Gateway) -> None:
    """No policy file (404), one too large, one not valid, one from a server whose certificate is not for
    its name, one too slow: delivered opportunistically (no cached policy), each failure reported."""
    https_peer.documents[("mta-sts.big.sts.test", "/.well-known/mta-sts.txt")] = Document(
        policy_text("enforce", ["a.hosts.test"]).encode() + b"#" * 70_000)
    https_peer.policy("broken.sts.test", "version: STSv2\r\nmode: enforce\r\nmx: a.hosts.test\r\nmax_age: 60\r\n")
    https_peer.policy("slow.sts.test", policy_text("enforce", ["a.hosts.test"]), delay=3.0)
    domains = ["missing", "big", "broken", "badcert", "slow"]
    dns = dnsmasq_factory(records({f"{d}.sts.test": ("1", ["o"]) for d in domains}))
    mx_servers("o")
    gw = gateway(_server(dns), timeout="1s")
    mids = {d: gw.submit(SENDER, [f"bob@{d}.sts.test"]) for d in domains}
    gw.deliver()
    for d, mid in mids.items():
        assert gw.states(mid) == {f"bob@{d}.sts.test": "delivered"}, gw.last_attempts(mid)
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
    mid = gw.submit(SENDER, [rcpt])
    gw.deliver()
    assert gw.states(mid) == {rcpt: "delivered"} and https_peer.fetches(domain) == 1
    gw.close()

    again = gateway(_server(first_dns), start=START + 60)  # the same state folder: a restart
    mid = again.submit(SENDER, [rcpt])
    again.deliver()
    assert again.states(mid) == {rcpt: "delivered"}
    assert https_peer.fetches(domain) == 1  # from the queue database
    again.close()

    # The TXT record is gone and the MX now points to b, which the cached policy does not list.
    stripped_dns = dnsmasq_factory(records({domain: (None, ["b"])}))
    attacked = gateway(_server(stripped_dns), start=START + 120)
    mid = attacked.submit(SENDER, [rcpt])
    attacked.deliver()
    assert attacked.states(mid) == {rcpt: "deferred"}
    assert "not an mx of the policy" in attacked.last_attempts(mid)[rcpt].text
    assert sinks["b"].connections == []
    attacked.close()

    # A new id: the new policy (testing, listing b) is fetched and applies.
    https_peer.policy(domain, policy_text("testing", ["b.hosts.test"], max_age=3600))
    new_dns = dnsmasq_factory(records({domain: ("2", ["b"])}))
    changed = gateway(_server(new_dns), start=START + 180)
    mid = changed.submit(SENDER, [rcpt])
    changed.deliver()
    assert changed.states(mid) == {rcpt: "delivered"} and https_peer.fetches(domain) == 2
    assert len(sinks["b"].wait_for(1)) == 1

    # Same id, an hour later: max_age has passed, the policy is fetched again.
    changed.clock.advance(3600)
    mid = changed.submit(SENDER, [rcpt])
    changed.deliver()
    assert changed.states(mid) == {rcpt: "delivered"} and https_peer.fetches(domain) == 3


def test_a_failed_fetch_is_not_repeated_for_every_delivery(
        dnsmasq_factory: DnsmasqFactory, https_peer: HttpsPeer, mx_servers: MxServers, gateway: Gateway) -> None:
    """The policy server of a domain is down (404 here): the next deliveries in the following 5 minutes do not
    ask it again (each would wait for it); after that it is tried again, and its policy then applies."""
    domain = "flaky.sts.test"
    dns = dnsmasq_factory(records({domain: ("1", ["a"])}))
    mx_servers("a")
    gw = gateway(_server(dns))
    for rcpt in ("bob@flaky.sts.test", "carol@flaky.sts.test"):
        mid = gw.submit(SENDER, [rcpt])
        gw.deliver()
        assert gw.states(mid) == {rcpt: "delivered"}
    assert https_peer.fetches(domain) == 1
    assert len(gw.run(gw.h.events("tls.failure.sts-policy-fetch-error"))) == 1

    https_peer.policy(domain, policy_text("enforce", ["a.hosts.test"]))
    gw.clock.advance(301)
    mid = gw.submit(SENDER, ["dave@flaky.sts.test"])
    gw.deliver()
    assert https_peer.fetches(domain) == 2
    assert "policy mta-sts" in gw.last_attempts(mid)["dave@flaky.sts.test"].text
