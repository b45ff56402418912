"""Self-tests: each real peer does what later tests rely on."""

from __future__ import annotations

import contextlib
import poplib
import smtplib
import ssl
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from .fixtures import EXAMPLE_ZONE, PEER_USERS, POSTFIX_HOST
from .net import make_traversable, pid_alive, port_accepts
from .postfix import PostfixPeer
from .sink import RecordingSink

if TYPE_CHECKING:  # not at run time: pytest would try to collect the class "TestPKI"
    from .certs import TestPKI
    from .dnsmasq import DnsmasqPeer
    from .dovecot import DovecotPeer
    from .fixtures import DnsmasqFactory

# -- Postfix smarthost --------------------------------------------------------


def swaks(pki: TestPKI, host: str, port: int, *args: str) -> subprocess.CompletedProcess[str]:
    """Run swaks against ``host:port`` verifying the server certificate with the test CA."""
    return subprocess.run(
        [
            "swaks",
            "--server",
            host,
            "--port",
            str(port),
            "--from",
            "alice@client.example",
            "--to",
            "someone@remote.example",
            "--tls-verify",
            "--tls-ca-path",
            str(pki.ca_file),
            "--timeout",
            "15",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "CRAM-MD5"])
@pytest.mark.parametrize("tls", ["--tls", "--tls-on-connect"])
def test_postfix_relays_after_auth(postfix_isp: PostfixPeer, pki: TestPKI, mechanism: str, tls: str) -> None:
    port = postfix_isp.submission_port if tls == "--tls" else postfix_isp.smtps_port
    user = "alice"
    result = swaks(
        pki,
        postfix_isp.host,
        port,
        tls,
        "--auth",
        mechanism,
        "--auth-user",
        user,
        "--auth-password",
        PEER_USERS[user],
        "--header",
        f"Subject: via {mechanism} {tls}",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert postfix_isp.sink is not None
    (msg,) = postfix_isp.sink.wait_for(1)
    assert msg.rcpt_tos == ["someone@remote.example"]
    headers = msg.data.split(b"\r\n\r\n", 1)[0].decode()
    assert "(Authenticated sender: alice)" in headers
    assert f"Subject: via {mechanism} {tls}" in headers
    logins = postfix_isp.sasl_logins()
    assert [(x.method, x.username) for x in logins] == [(mechanism, "alice")]
    assert logins[0].service.endswith("/submission/smtpd" if tls == "--tls" else "/smtps/smtpd")


def test_postfix_refuses_unauthenticated_relay(postfix_isp: PostfixPeer, pki: TestPKI) -> None:
    result = swaks(pki, postfix_isp.host, postfix_isp.submission_port, "--tls")
    assert result.returncode != 0
    assert "554 5.7.1" in result.stdout
    assert postfix_isp.sink is not None and postfix_isp.sink.messages == []
    assert postfix_isp.sasl_logins() == []


def test_postfix_rejects_wrong_password(postfix_isp: PostfixPeer, pki: TestPKI) -> None:
    result = swaks(
        pki,
        postfix_isp.host,
        postfix_isp.submission_port,
        "--tls",
        "--auth",
        "PLAIN",
        "--auth-user",
        "alice",
        "--auth-password",
        "wrong",
    )
    assert result.returncode != 0
    assert "535 5.7.8" in result.stdout


def test_postfix_offers_auth_only_after_tls(postfix_isp: PostfixPeer, pki: TestPKI) -> None:
    ctx = ssl.create_default_context(cafile=str(pki.ca_file))
    for port in (postfix_isp.submission_port, postfix_isp.smtp_port):
        assert port is not None
        with smtplib.SMTP(postfix_isp.host, port, timeout=10) as smtp:
            smtp.ehlo("client.example")
            assert smtp.has_extn("starttls")
            assert not smtp.has_extn("auth")
            smtp.starttls(context=ctx)
            smtp.ehlo("client.example")
            assert set(smtp.esmtp_features["auth"].upper().split()) == {"PLAIN", "LOGIN", "CRAM-MD5"}
            smtp.login("gateway", PEER_USERS["gateway"])
    with smtplib.SMTP_SSL(postfix_isp.host, postfix_isp.smtps_port, context=ctx, timeout=10) as smtp:
        smtp.ehlo("client.example")
        assert smtp.has_extn("auth")


def test_postfix_flush_delivers_deferred_mail(
    tmp_path_factory: pytest.TempPathFactory, pki: TestPKI, dovecot_peer: DovecotPeer
) -> None:
    sink = RecordingSink("127.0.0.1")  # not listening yet: the relay attempt is deferred
    workdir = tmp_path_factory.mktemp("postfix")
    make_traversable(workdir)
    slow_retry = {"queue_run_delay": "300s", "minimal_backoff_time": "300s", "maximal_backoff_time": "300s"}
    with PostfixPeer(
        workdir, pki, sasl_path=dovecot_peer.auth_socket, sink=sink, host=POSTFIX_HOST, extra_main=slow_retry
    ) as postfix:
        ctx = ssl.create_default_context(cafile=str(pki.ca_file))
        with smtplib.SMTP_SSL(postfix.host, postfix.smtps_port, context=ctx, timeout=10) as smtp:
            smtp.login("bob", PEER_USERS["bob"])
            smtp.sendmail("bob@client.example", ["far@remote.example"], b"Subject: later\r\n\r\nbody\r\n")
        postfix.wait_for_log(r"status=deferred")
        assert "far@remote.example" in postfix.queue()
        with sink:
            postfix.flush()
            (msg,) = sink.wait_for(1, timeout=15)
        assert msg.rcpt_tos == ["far@remote.example"]
        assert b"(Authenticated sender: bob)" in msg.data
        postfix.wait_for_log(r"status=sent")


def test_postfix_stops_cleanly(postfix_isp: PostfixPeer) -> None:
    pid = int((postfix_isp.queue_dir / "pid" / "master.pid").read_text().split()[0])
    postfix_isp.stop()
    assert not pid_alive(pid)
    assert not any(port_accepts(postfix_isp.host, p) for p in postfix_isp.ports)
    postfix_isp.stop()  # idempotent


# -- Dovecot POP3 -------------------------------------------------------------


@contextlib.contextmanager
def dovecot_log_on_error(peer: DovecotPeer) -> Iterator[None]:
    """Turn an unexpected POP3 error into a failure that shows Dovecot's log."""
    try:
        yield
    except poplib.error_proto as exc:
        raise AssertionError(f"POP3 error {exc!r}; Dovecot log:\n{peer.log_text()[-6000:]}") from exc


def test_dovecot_pop3_logins(dovecot_peer: DovecotPeer, pki: TestPKI) -> None:
    with dovecot_log_on_error(dovecot_peer):
        check_pop3_logins(dovecot_peer, pki)


def check_pop3_logins(dovecot_peer: DovecotPeer, pki: TestPKI) -> None:
    ctx = ssl.create_default_context(cafile=str(pki.ca_file))
    dovecot_peer.add_message("alice", b"Subject: hello\r\n\r\nbody\r\n")
    before = datetime.now()

    pop = poplib.POP3(dovecot_peer.host, dovecot_peer.pop3_port, timeout=10)
    assert "STLS" in pop.capa()
    pop.user("alice")
    pop.pass_(PEER_USERS["alice"])
    assert pop.stat()[0] == 1
    assert b"Subject: hello" in b"\r\n".join(pop.retr(1)[1])
    pop.quit()

    pop = poplib.POP3(dovecot_peer.host, dovecot_peer.pop3_port, timeout=10)
    pop.stls(ctx)
    pop.user("bob")
    pop.pass_(PEER_USERS["bob"])
    pop.quit()

    pop = poplib.POP3_SSL(dovecot_peer.host, dovecot_peer.pop3s_port, context=ctx, timeout=10)
    pop.user("gateway")
    pop.pass_(PEER_USERS["gateway"])
    pop.quit()

    pop = poplib.POP3(dovecot_peer.host, dovecot_peer.pop3_port, timeout=10)
    pop.apop("alice", PEER_USERS["alice"])
    pop.quit()

    after = datetime.now()
    logins = dovecot_peer.wait_for_logins(4)
    assert [(x.user, x.method, x.tls) for x in logins] == [
        ("alice", "PLAIN", False),
        ("bob", "PLAIN", True),
        ("gateway", "PLAIN", True),
        ("alice", "APOP", False),
    ]
    for login in logins:
        assert before - timedelta(seconds=1) <= login.timestamp <= after + timedelta(seconds=1)
        assert login.rip == "127.0.0.1"
        assert login.lip == dovecot_peer.host
    assert any(x.timestamp.microsecond for x in logins)  # microsecond precision
    assert logins == sorted(logins, key=lambda x: x.timestamp)


def test_dovecot_wrong_password_has_no_penalty(dovecot_peer: DovecotPeer) -> None:
    with dovecot_log_on_error(dovecot_peer):
        check_no_penalty(dovecot_peer)


def check_no_penalty(dovecot_peer: DovecotPeer) -> None:
    pop = poplib.POP3(dovecot_peer.host, dovecot_peer.pop3_port, timeout=10)
    pop.user("alice")
    with pytest.raises(poplib.error_proto):
        pop.pass_("wrong")
    pop.quit()
    started = time.monotonic()
    pop = poplib.POP3(dovecot_peer.host, dovecot_peer.pop3_port, timeout=10)
    pop.user("alice")
    pop.pass_(PEER_USERS["alice"])
    pop.quit()
    assert time.monotonic() - started < 1.5
    assert [x.user for x in dovecot_peer.wait_for_logins(1)] == ["alice"]


def test_dovecot_stops_cleanly(dovecot_peer: DovecotPeer) -> None:
    pid = int((dovecot_peer.base_dir / "master.pid").read_text().split()[0])
    dovecot_peer.stop()
    assert not pid_alive(pid)
    assert not port_accepts(dovecot_peer.host, dovecot_peer.pop3_port)
    dovecot_peer.stop()


# -- dnsmasq ------------------------------------------------------------------

RECORDS = [*EXAMPLE_ZONE, "host-record=aonly.test,127.0.1.23"]


def ask(peer: DnsmasqPeer, name: str, rdtype: str, timeout: float = 2.0) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype)
    return dns.query.udp(query, peer.address, port=peer.port, timeout=timeout)


def answer_texts(reply: dns.message.Message) -> list[str]:
    return sorted(rd.to_text() for rrset in reply.answer for rd in rrset)


@pytest.fixture
def dnsmasq(dnsmasq_factory: DnsmasqFactory) -> DnsmasqPeer:
    return dnsmasq_factory(RECORDS, servfail_domains=["broken.test"], timeout_domains=["slow.test"])


def test_dnsmasq_records(dnsmasq: DnsmasqPeer) -> None:
    reply = ask(dnsmasq, "example.test", "MX")
    assert reply.rcode() == dns.rcode.NOERROR
    assert answer_texts(reply) == ["10 mx1.example.test.", "20 mx2.example.test."]
    assert answer_texts(ask(dnsmasq, "mx1.example.test", "A")) == ["127.0.1.21"]
    assert answer_texts(ask(dnsmasq, "mx1.example.test", "AAAA")) == ["::1"]
    assert answer_texts(ask(dnsmasq, "mx2.example.test", "AAAA")) == []
    assert answer_texts(ask(dnsmasq, "aonly.test", "A")) == ["127.0.1.23"]
    reply = ask(dnsmasq, "aonly.test", "MX")
    assert reply.rcode() == dns.rcode.NOERROR and reply.answer == []


def test_dnsmasq_null_mx(dnsmasq: DnsmasqPeer) -> None:
    reply = ask(dnsmasq, "nullmx.test", "MX")
    assert reply.rcode() == dns.rcode.NOERROR
    (rrset,) = reply.answer
    (mx,) = list(rrset)
    assert mx.rdtype == dns.rdatatype.MX
    assert mx.preference == 0 and mx.exchange.to_text() == "."


def test_dnsmasq_failures(dnsmasq: DnsmasqPeer) -> None:
    assert ask(dnsmasq, "nothing.test", "MX").rcode() == dns.rcode.NXDOMAIN
    assert ask(dnsmasq, "nothing.test", "A").rcode() == dns.rcode.NXDOMAIN
    for name, rdtype in [("broken.test", "MX"), ("mx.broken.test", "A"), ("broken.test", "AAAA")]:
        started = time.monotonic()
        assert ask(dnsmasq, name, rdtype).rcode() == dns.rcode.SERVFAIL, (name, rdtype)
        assert time.monotonic() - started < 1.0
    started = time.monotonic()
    with pytest.raises(dns.exception.Timeout):
        ask(dnsmasq, "slow.test", "MX", timeout=1.0)
    assert time.monotonic() - started >= 1.0
    with pytest.raises(dns.exception.Timeout):
        ask(dnsmasq, "www.slow.test", "A", timeout=0.5)
    # Outside the configured domains there is no upstream: REFUSED.
    assert ask(dnsmasq, "example.org", "A").rcode() == dns.rcode.REFUSED
    assert ("MX", "example.test") not in {(q.qtype, q.name) for q in dnsmasq.queries()}
    assert ("MX", "slow.test") in {(q.qtype, q.name) for q in dnsmasq.queries()}


def test_dnsmasq_with_dnspython_resolver(dnsmasq: DnsmasqPeer) -> None:
    import dns.resolver

    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [dnsmasq.address]
    resolver.port = dnsmasq.port
    resolver.lifetime = 2.0
    answer = resolver.resolve("example.test", "MX")
    assert sorted((r.preference, r.exchange.to_text()) for r in answer) == [
        (10, "mx1.example.test."),
        (20, "mx2.example.test."),
    ]
    with pytest.raises(dns.resolver.NXDOMAIN):
        resolver.resolve("nothing.test", "MX")
    with pytest.raises(dns.resolver.NoAnswer):
        resolver.resolve("aonly.test", "MX")
    with pytest.raises(dns.resolver.NoNameservers):  # SERVFAIL from the only server
        resolver.resolve("broken.test", "MX")
    with pytest.raises(dns.resolver.LifetimeTimeout):
        resolver.resolve("slow.test", "MX", lifetime=1.0)


def test_dnsmasq_stops_cleanly(dnsmasq_factory: DnsmasqFactory) -> None:
    peer = dnsmasq_factory(RECORDS, servfail_domains=["broken.test"])
    assert ask(peer, "example.test", "MX").rcode() == dns.rcode.NOERROR
    peer.stop()
    assert not port_accepts(peer.address, peer.port)
    peer.stop()
