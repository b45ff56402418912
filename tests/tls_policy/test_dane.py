"""DANE (RFC 7672) through a real validating resolver: unbound over NSD with zones signed at test time.

Each test delivers to a name in ``secure.test`` (signed), ``insecure.test`` (unsigned) or
``bogus.test`` (wrong DS) whose MX is one of the hosts of world.py, and checks what the MX
server got and what the attempt says (``[tls: policy ..., TLSv1.x, verification]`` in its
text). ``dnssec: validating`` gives ``dane: opportunistic`` by default.
"""

from __future__ import annotations

from typing import Any

from tests.peers.dnssec import SignedDns
from tests.peers.harness import SyncHarness

from .conftest import Gateway, MxServers, deliver_each, deliver_one


def _validating(dns: SignedDns) -> str:
    return SignedDns.server(dns.validating)


def _dane(gateway: Gateway, dns: SignedDns, **options: Any) -> SyncHarness:
    """A gateway resolving through the validating resolver with ``dnssec: validating`` (and ``options``)."""
    return gateway(_validating(dns), dnssec="validating", **options)


def test_dane_ee_match_delivers_with_tls(signed_dns: SignedDns, mx_servers: MxServers, gateway: Gateway) -> None:
    """A matching DANE-EE(3) record: delivered over TLS, the attempt names the policy, version and match."""
    sinks = mx_servers("a")
    a = deliver_one(_dane(gateway, signed_dns), "bob@ok.secure.test", "delivered")
    [got] = sinks["a"].wait_for(1)
    assert got.tls
    assert a.remote_host == "a.hosts.test"
    assert "[tls: policy dane, TLSv1." in a.text and "DANE-EE(3) 3 1 1" in a.text and "matched" in a.text


def test_dane_mismatch_tries_the_next_mx(signed_dns: SignedDns, mx_servers: MxServers, gateway: Gateway) -> None:
    """The best MX presents a key its TLSA does not name: not used (no mail to it), the next MX delivers."""
    sinks = mx_servers("a", "b")
    gw = _dane(gateway, signed_dns)
    deliver_one(gw, "bob@fallover.secure.test", "delivered")
    assert len(sinks["a"].wait_for(1)) == 1
    assert sinks["b"].messages == []
    assert [c.tls for c in sinks["b"].connections] == [True]  # it got as far as the handshake, then no MAIL
    assert [v for _, v in sinks["b"].commands if v in ("MAIL", "RCPT", "DATA")] == []
    events = gw.run(gw.h.events("tls.failure"))
    assert [(e.kind, e.data["host"], e.data["policy"]) for e in events] == [
        ("tls.failure.tlsa-invalid", "b.hosts.test", "dane")]


def test_dane_mismatch_on_every_mx_defers(signed_dns: SignedDns, mx_servers: MxServers, gateway: Gateway) -> None:
    """Only a mismatching MX: a temporary failure (4.7.5), never a delivery to it."""
    sinks = mx_servers("b")
    a = deliver_one(_dane(gateway, signed_dns), "bob@mismatch.secure.test", "deferred")
    assert (a.code, a.enhanced) == (451, "4.7.5"), a.text
    assert "not trusted" in a.text and "no TLSA record matched" in a.text and "policy dane" in a.text
    assert sinks["b"].messages == []


def test_dane_ta_with_chain_and_name(signed_dns: SignedDns, mx_servers: MxServers, gateway: Gateway) -> None:
    """DANE-TA(2) 2 0 1 names the test CA, which the server sends in its chain: verified, delivered."""
    sinks = mx_servers("c")
    text = deliver_one(_dane(gateway, signed_dns), "bob@ta.secure.test", "delivered").text
    assert sinks["c"].wait_for(1)[0].tls
    assert "DANE-TA(2) 2 0 1" in text and "name c.hosts.test verified" in text


def test_dane_ta_sha512_of_the_ca_key(signed_dns: SignedDns, mx_servers: MxServers, gateway: Gateway) -> None:
    """DANE-TA(2) 2 1 2: SHA2-512 of the CA's public key."""
    mx_servers("y")
    assert "DANE-TA(2) 2 1 2" in deliver_one(_dane(gateway, signed_dns), "bob@sha512.secure.test", "delivered").text


def test_dane_ta_name_mismatch_defers(signed_dns: SignedDns, mx_servers: MxServers, gateway: Gateway) -> None:
    """DANE-TA: a chain to the named CA whose leaf is for another name is refused (certificate-host-mismatch)."""
    sinks = mx_servers("w")
    gw = _dane(gateway, signed_dns)
    deliver_one(gw, "bob@wrongname.secure.test", "deferred")
    assert sinks["w"].messages == []
    [event] = gw.run(gw.h.events("tls.failure"))
    assert event.kind == "tls.failure.certificate-host-mismatch"


def test_dane_ee_full_key_and_expired_certificate(signed_dns: SignedDns, mx_servers: MxServers,
                                                  gateway: Gateway) -> None:
    """DANE-EE full matching (3 1 0); and DANE-EE ignores the certificate's dates (RFC 7672 3.1.1)."""
    sinks = mx_servers("x", "d")
    attempts = deliver_each(_dane(gateway, signed_dns),
                            {"bob@full.secure.test": "delivered", "bob@expired.secure.test": "delivered"})
    assert "DANE-EE(3) 3 1 0" in attempts["bob@full.secure.test"].text
    assert len(sinks["d"].wait_for(1)) == 1


def test_only_unusable_tlsa_records_mean_tls_without_authentication(
        signed_dns: SignedDns, mx_servers: MxServers, gateway: Gateway) -> None:
    """TLSA records that SMTP cannot use (PKIX-EE): TLS is still required, the certificate is not checked."""
    sinks = mx_servers("z")
    a = deliver_one(_dane(gateway, signed_dns), "bob@unusable.secure.test", "delivered")
    assert sinks["z"].wait_for(1)[0].tls
    assert "policy dane, TLSv1." in a.text


def test_bogus_tlsa_defers_and_tries_the_next_mx(signed_dns: SignedDns, mx_servers: MxServers,
                                                  gateway: Gateway) -> None:
    """A TLSA lookup that fails (its records do not validate: SERVFAIL): that host is not even connected to
    (4.7.5); a domain with another MX delivers there."""
    sinks = mx_servers("f", "a")
    gw = _dane(gateway, signed_dns)
    a = deliver_each(gw, {"bob@bogus-tlsa.secure.test": "deferred",
                          "bob@bogus-then-ok.secure.test": "delivered"})["bob@bogus-tlsa.secure.test"]
    assert (a.code, a.enhanced) == (451, "4.7.5") and "TLSA" in a.text and "SERVFAIL" in a.text, a.text
    assert sinks["f"].connections == []
    assert len(sinks["a"].wait_for(1)) == 1
    kinds = {e.kind for e in gw.run(gw.h.events("tls.failure"))}
    assert kinds == {"tls.failure.dnssec-invalid"}


def test_secure_denial_of_tlsa_falls_back(signed_dns: SignedDns, mx_servers: MxServers, gateway: Gateway) -> None:
    """A signed host with no TLSA records (authenticated denial): no DANE, opportunistic TLS, delivered."""
    sinks = mx_servers("n")
    text = deliver_one(_dane(gateway, signed_dns, mta_sts=False), "bob@notlsa.secure.test", "delivered").text
    assert sinks["n"].wait_for(1)[0].tls
    assert "[tls: policy opportunistic, TLSv1." in text and "certificate not verified" in text


def test_insecure_delegation_ignores_tlsa(signed_dns: SignedDns, mx_servers: MxServers, gateway: Gateway) -> None:
    """MX records of an unsigned zone: DANE does not apply even though the MX host has (mismatching) TLSA;
    and a signed domain whose MX host is in an unsigned zone: the same."""
    sinks = mx_servers("b")
    attempts = deliver_each(_dane(gateway, signed_dns),
                            {"bob@insecure.test": "delivered", "bob@to-insecure-host.secure.test": "delivered"})
    assert len(sinks["b"].wait_for(2)) == 2
    assert "policy opportunistic" in attempts["bob@insecure.test"].text


def test_bogus_delegation_defers(signed_dns: SignedDns, mx_servers: MxServers, gateway: Gateway) -> None:
    """A zone whose DS matches none of its keys: the validating resolver answers SERVFAIL, the mail waits."""
    sinks = mx_servers("a")
    a = deliver_one(_dane(gateway, signed_dns), "bob@bogus.test", "deferred")
    assert (a.code, a.enhanced) == (451, "4.4.3") and "SERVFAIL" in a.text
    assert sinks["a"].connections == []


def test_stripped_starttls_is_refused_under_dane(signed_dns: SignedDns, mx_servers: MxServers,
                                                 gateway: Gateway) -> None:
    """An attacker between us and a DANE host removes STARTTLS: nothing is sent in clear (4.7.4, deferred).

    Without DANE (dnssec: none) the same relay gets the mail in clear: the attack works on
    opportunistic TLS, which is why the policies exist.
    """
    sinks = mx_servers("s")
    gw = _dane(gateway, signed_dns)
    a = deliver_one(gw, "bob@stripped.secure.test", "deferred")
    assert (a.code, a.enhanced) == (451, "4.7.4") and "policy dane" in a.text, a.text
    assert sinks["s"].messages == []
    [event] = gw.run(gw.h.events("tls.failure"))
    assert event.kind == "tls.failure.starttls-not-supported"

    plain = gateway(_validating(signed_dns), name="plain", dnssec="none")
    text = deliver_one(plain, "bob@stripped.secure.test", "delivered").text
    [got] = sinks["s"].wait_for(1)
    assert not got.tls
    assert "[tls: policy opportunistic, no TLS]" in text


def test_dane_required_refuses_domains_without_dane(signed_dns: SignedDns, mx_servers: MxServers,
                                                    gateway: Gateway) -> None:
    """``dane: required``: a domain without DANE is deferred (dane-required); one with DANE is delivered."""
    sinks = mx_servers("a", "b")
    gw = _dane(gateway, signed_dns, dane="required")
    a = deliver_each(gw, {"bob@insecure.test": "deferred", "bob@ok.secure.test": "delivered"})["bob@insecure.test"]
    assert (a.code, a.enhanced) == (451, "4.7.5") and "DANE required" in a.text, a.text
    assert sinks["b"].connections == []
    assert {e.kind for e in gw.run(gw.h.events("tls.failure"))} == {"tls.failure.dane-required"}


def test_non_validating_resolver_never_makes_signed_domains_bogus(
        signed_dns: SignedDns, mx_servers: MxServers, gateway: Gateway) -> None:
    """A resolver that does not validate, even when named as validating, sets no AD bit: every answer is
    insecure, so signed domains are delivered as before (opportunistic), none turns into a failure; even a
    domain whose TLSA records would not validate. With ``dnssec: none`` the validating resolver's AD bit is
    not trusted either: no DANE, no TLSA lookup."""
    sinks = mx_servers("a", "b", "f")
    rcpts = ["bob@ok.secure.test", "bob@mismatch.secure.test", "bob@bogus-tlsa.secure.test"]
    for name, server, dnssec in (("plain", SignedDns.server(signed_dns.plain), "validating"),
                                 ("none", _validating(signed_dns), "none")):
        gw = gateway(server, name=name, dnssec=dnssec, mta_sts=False)
        for a in deliver_each(gw, dict.fromkeys(rcpts, "delivered")).values():
            assert "policy opportunistic" in a.text, name
        assert gw.run(gw.h.events("tls.failure")) == []
    assert len(sinks["a"].messages) == len(sinks["b"].messages) == len(sinks["f"].messages) == 2


def test_dane_takes_precedence_over_mta_sts(signed_dns: SignedDns, mx_servers: MxServers, gateway: Gateway) -> None:
    """A domain with both: its MTA-STS policy (enforce) does not list the MX, but the MX has matching TLSA
    records, so DANE applies and the mail is delivered; a domain with MTA-STS only is enforced."""
    mx_servers("a", "n")
    attempts = deliver_each(_dane(gateway, signed_dns),
                            {"bob@both.secure.test": "delivered", "bob@stsonly.secure.test": "delivered"})
    assert "policy dane" in attempts["bob@both.secure.test"].text
    text = attempts["bob@stsonly.secure.test"].text
    assert "policy mta-sts, TLSv1." in text and "certificate verified (CA chain and name)" in text


def test_dane_off_with_a_validating_resolver(signed_dns: SignedDns, mx_servers: MxServers, gateway: Gateway) -> None:
    """``dane: off``: the resolver validates (a bogus domain still fails), but TLSA records are not looked
    up: a host whose records would not match gets the mail with opportunistic TLS."""
    sinks = mx_servers("b")
    gw = _dane(gateway, signed_dns, dane="off", mta_sts=False)
    attempts = deliver_each(gw, {"bob@mismatch.secure.test": "delivered", "bob@bogus.test": "deferred"})
    assert "[tls: policy opportunistic, TLSv1." in attempts["bob@mismatch.secure.test"].text
    assert len(sinks["b"].wait_for(1)) == 1
