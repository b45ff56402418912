"""docs/direct.md through a running ``pipeline serve``: a real dnsmasq, RecordingSinks as MX hosts on 127.0.1.x.

Each test starts the gateway with only ``direct`` in its chain, hands it mail over SMTP and reads
the outcome from ``pipeline log --json``, ``pipeline events --json`` and what the sinks received.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.peers.dnsmasq import DnsmasqPeer
from tests.peers.mailpipe import MailpipeProcess
from tests.peers.net import free_port
from tests.promises.operations.helpers import attempts, reply_of, submit, wait_outcome

MX1, MX2, MX3 = "127.0.1.21", "127.0.1.22", "127.0.1.23"
GATEWAY_NAME = "gw.test"


def asked(dns: DnsmasqPeer) -> list[tuple[str, str]]:
    """(type, name) of every query dnsmasq got, except the readiness probes of the test peer and the
    MTA-STS TXT lookups (``_mta-sts.DOMAIN``, docs/direct.md "Transport security")."""
    return [(q.qtype, q.name) for q in dns.queries() if q.name != "version.bind" and not q.name.startswith("_mta-sts.")]


def direct_gateway(mailpipe_factory: Callable[..., MailpipeProcess], dns: DnsmasqPeer, port: int,
                   *, listen: list[str] | None = None, **options: Any) -> MailpipeProcess:
    """A started ``pipeline serve`` delivering with ``direct`` only, through ``dns``, to MX port ``port``."""
    host, dns_port = dns.nameserver
    config: dict[str, Any] = {
        "hostname": GATEWAY_NAME,
        "delivery": {"timeout": "5s"},
        "chain": [{"direct": {"dns_servers": [f"{host}:{dns_port}"], "port": port, **options}}],
    }
    if listen:
        config["listen"] = listen
    return mailpipe_factory(config).start()


def test_no_mx_host_with_an_address_bounces_550_5_4_4(mailpipe_factory, dnsmasq_factory, mx_port) -> None:
    """An MX list whose host names have no address at all (NXDOMAIN) is permanent: 550 5.4.4, bounced at once."""
    dns = dnsmasq_factory(["local=/test/", "mx-host=noaddr.test,mx.noaddr.test,10"])
    gw = direct_gateway(mailpipe_factory, dns, mx_port)
    mid = submit(gw, ["bob@noaddr.test"])
    wait_outcome(gw, mid, "bob@noaddr.test")
    [row] = attempts(gw, mid)
    assert reply_of(row) == ("bob@noaddr.test", "bounced", 550, "5.4.4",
                             "no MX host of noaddr.test has an address: 10 mx.noaddr.test: no A/AAAA records")
    assert row["outcome"] == "permanent" and row["route"] == "direct:noaddr.test"
    [rcpt] = gw.cli_json("queue", "show", mid)["recipients"]
    assert (rcpt["state"], rcpt["attempts"]) == ("failed", 1)


DUAL = ["local=/test/", "mx-host=dual.test,mx.dual.test,10", f"host-record=mx.dual.test,{MX2},::1",
        "mx-host=six.test,mx.six.test,10", "host-record=mx.six.test,::1"]


def test_ip_version_ipv4_uses_only_a_records(mailpipe_factory, dnsmasq_factory, mx_sinks, mx_port) -> None:
    """ip_version: ipv4 delivers to the A address of a dual-stack MX (not the preferred IPv6) and never to AAAA."""
    dns = dnsmasq_factory(DUAL)
    v4, v6 = mx_sinks(MX2, "::1")
    gw = direct_gateway(mailpipe_factory, dns, mx_port, ip_version="ipv4")
    dual = submit(gw, ["bob@dual.test"])
    six = submit(gw, ["carol@six.test"])
    wait_outcome(gw, dual, "bob@dual.test")
    wait_outcome(gw, six, "carol@six.test")
    assert [m.rcpt_tos for m in v4.messages] == [["bob@dual.test"]]
    assert v6.messages == []
    [row] = attempts(gw, dual)
    assert (row["action"], row["remote_host"], row["remote_addr"]) == ("delivered", "mx.dual.test", MX2)
    [row] = attempts(gw, six)  # its only address is IPv6: for an IPv4-only gateway it has none
    assert reply_of(row) == ("carol@six.test", "bounced", 550, "5.4.4",
                             "no MX host of six.test has an address: 10 mx.six.test: no A/AAAA records")


def test_ip_version_ipv6_uses_only_aaaa_records(mailpipe_factory, dnsmasq_factory, mx_sinks, mx_port) -> None:
    """ip_version: ipv6 (prefer_ipv6: false) still delivers to the IPv6 address, never over IPv4."""
    dns = dnsmasq_factory(DUAL)
    v4, v6 = mx_sinks(MX2, "::1")
    gw = direct_gateway(mailpipe_factory, dns, mx_port, ip_version="ipv6", prefer_ipv6=False)
    mid = submit(gw, ["bob@dual.test"])
    wait_outcome(gw, mid, "bob@dual.test")
    assert [m.rcpt_tos for m in v6.messages] == [["bob@dual.test"]]
    assert v4.messages == []
    [row] = attempts(gw, mid)
    assert (row["action"], row["remote_host"], row["remote_addr"]) == ("delivered", "mx.dual.test", "::1")


def test_domain_literals_go_to_that_address_without_dns(mailpipe_factory, dnsmasq_factory, mx_sinks, mx_port) -> None:
    """``user@[192.0.2.1]`` and ``user@[IPv6:::1]`` are delivered to that address; DNS is not asked."""
    dns = dnsmasq_factory(["local=/test/"])
    sink, v6 = mx_sinks(MX3, "::1")
    gw = direct_gateway(mailpipe_factory, dns, mx_port)
    mid = submit(gw, [f"bob@[{MX3}]", "carol@[IPv6:::1]"])
    wait_outcome(gw, mid, f"bob@[{MX3}]")
    wait_outcome(gw, mid, "carol@[IPv6:::1]")
    assert [m.rcpt_tos for m in sink.messages] == [[f"bob@[{MX3}]"]]
    assert [m.rcpt_tos for m in v6.messages] == [["carol@[IPv6:::1]"]]
    rows = {r["recipient"]: r for r in attempts(gw, mid)}
    assert {r: (row["action"], row["remote_addr"]) for r, row in rows.items()} == {
        f"bob@[{MX3}]": ("delivered", MX3), "carol@[IPv6:::1]": ("delivered", "::1")}
    assert asked(dns) == []


def test_dns_answers_are_cached_for_their_ttl(mailpipe_factory, dnsmasq_factory, mx_sinks, mx_port) -> None:
    """A second message within the answers' TTL (300s) is delivered without asking DNS again."""
    dns = dnsmasq_factory(["local=/test/", "local-ttl=300", "mx-host=cache.test,mx.cache.test,10",
                           f"host-record=mx.cache.test,{MX1}"])
    (sink,) = mx_sinks(MX1)
    gw = direct_gateway(mailpipe_factory, dns, mx_port, ip_version="ipv4")
    first = submit(gw, ["bob@cache.test"])
    wait_outcome(gw, first, "bob@cache.test")
    first_queries = asked(dns)
    assert first_queries == [("MX", "cache.test"), ("A", "mx.cache.test")]
    second = submit(gw, ["carol@cache.test"])
    wait_outcome(gw, second, "carol@cache.test")
    assert [m.rcpt_tos for m in sink.wait_for(2)] == [["bob@cache.test"], ["carol@cache.test"]]
    assert asked(dns) == first_queries, "the cached answers were not used"


def test_dns_answers_with_ttl_0_are_asked_again(mailpipe_factory, dnsmasq_factory, mx_sinks, mx_port) -> None:
    """The cache honours the TTL: answers with TTL 0 (dnsmasq's default for its own records) are not reused."""
    dns = dnsmasq_factory(["local=/test/", "mx-host=cache.test,mx.cache.test,10", f"host-record=mx.cache.test,{MX1}"])
    (sink,) = mx_sinks(MX1)
    gw = direct_gateway(mailpipe_factory, dns, mx_port, ip_version="ipv4")
    for n, rcpt in enumerate(["bob@cache.test", "carol@cache.test"], 1):
        mid = submit(gw, [rcpt])
        wait_outcome(gw, mid, rcpt)
        assert asked(dns) == [("MX", "cache.test"), ("A", "mx.cache.test")] * n
    assert len(sink.wait_for(2)) == 2


TWO_MX = ["local=/test/", "mx-host=example.test,mx1.example.test,10", "mx-host=example.test,mx2.example.test,20",
          f"host-record=mx1.example.test,{MX1}", f"host-record=mx2.example.test,{MX2}"]


def test_4xx_to_every_recipient_moves_on_to_the_next_mx(mailpipe_factory, dnsmasq_factory, mx_sinks, mx_port) -> None:
    """The best MX answers 450 to every RCPT: the same attempt delivers both recipients at the next MX host."""
    dns = dnsmasq_factory(TWO_MX)
    mx1, mx2 = mx_sinks(MX1, MX2)
    for rcpt in ("bob@example.test", "carol@example.test"):
        mx1.behaviour.rcpt[rcpt] = "450 4.2.1 mailbox busy, try later"
    gw = direct_gateway(mailpipe_factory, dns, mx_port, ip_version="ipv4")
    mid = submit(gw, ["bob@example.test", "carol@example.test"])
    wait_outcome(gw, mid, "bob@example.test")
    wait_outcome(gw, mid, "carol@example.test")
    [got] = mx2.wait_for(1)
    assert got.rcpt_tos == ["bob@example.test", "carol@example.test"]
    assert mx1.messages == []
    rows = attempts(gw, mid)
    assert sorted((r["recipient"], r["action"], r["remote_host"], r["code"]) for r in rows) == [
        ("bob@example.test", "delivered", "mx2.example.test", 250),
        ("carol@example.test", "delivered", "mx2.example.test", 250)]


def test_4xx_to_some_recipients_stays_with_that_mx(mailpipe_factory, dnsmasq_factory, mx_sinks, mx_port) -> None:
    """Only *every* recipient refused temporarily moves on: a 450 for one and 250 for the other stays at mx1."""
    dns = dnsmasq_factory(TWO_MX)
    mx1, mx2 = mx_sinks(MX1, MX2)
    mx1.behaviour.rcpt["bob@example.test"] = "450 4.2.1 mailbox busy, try later"
    gw = direct_gateway(mailpipe_factory, dns, mx_port, ip_version="ipv4")
    mid = submit(gw, ["bob@example.test", "carol@example.test"])
    wait_outcome(gw, mid, "bob@example.test")
    wait_outcome(gw, mid, "carol@example.test")
    assert [m.rcpt_tos for m in mx1.wait_for(1)] == [["carol@example.test"]]
    assert mx2.messages == []
    rows = {r["recipient"]: r for r in attempts(gw, mid)}
    assert (rows["carol@example.test"]["action"], rows["carol@example.test"]["remote_host"]) == (
        "delivered", "mx1.example.test")
    bob = rows["bob@example.test"]
    assert (bob["action"], bob["remote_host"], bob["code"], bob["enhanced"]) == (
        "deferred", "mx1.example.test", 450, "4.2.1")


def test_mx_pointing_back_at_the_gateway_is_a_mail_loop(mailpipe_factory, dnsmasq_factory, mx_sinks, mx_port) -> None:
    """The best MX is this gateway's own listen address: 554 5.4.6, bounced, and a ``mail.loop`` event."""
    own = "127.0.1.30"
    dns = dnsmasq_factory(["local=/test/", "mx-host=loop.test,relay.loop.test,10",
                           "mx-host=loop.test,backup.loop.test,20",
                           f"host-record=relay.loop.test,{own}", f"host-record=backup.loop.test,{MX2}"])
    (backup,) = mx_sinks(MX2)
    gw = direct_gateway(mailpipe_factory, dns, mx_port, ip_version="ipv4",
                        listen=[f"127.0.0.1:{free_port()}", f"{own}:{mx_port}"])
    mid = submit(gw, ["bob@loop.test"])
    wait_outcome(gw, mid, "bob@loop.test")
    [row] = attempts(gw, mid)
    assert reply_of(row) == ("bob@loop.test", "bounced", 554, "5.4.6",
                             "mail for loop.test loops back to myself (relay.loop.test is its best MX)")
    [event] = gw.cli_json("events", "--kind", "mail.loop")
    assert (event["kind"], event["level"]) == ("mail.loop", "error")
    assert event["text"] == (f"{mid}: 554 5.4.6 mail for loop.test loops back to myself "
                             "(relay.loop.test is its best MX)")
    assert event["data"] == {"message": mid, "domain": "loop.test"}
    assert backup.messages == []  # a worse MX than this gateway is never used
