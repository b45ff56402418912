"""TLS reporting (RFC 8460): counts per policy domain and failure type, the daily report by mail and HTTPS.

The world of world.py: ``both.secure.test`` has DANE on its MX hosts (``b`` mismatching,
``a`` matching) and publishes ``_smtp._tls`` with a ``mailto:`` rua (whose MX is host ``n``)
and an ``https:`` rua on the policy server; ``stsonly.secure.test`` has MTA-STS (enforce)
and a ``mailto:`` rua. The clock is the harness's: a day passes by moving it.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import gzip
import json
from typing import Any

import httpx

from tests.peers.dnssec import SignedDns
from tests.peers.harness import SyncHarness
from tests.peers.https_server import HttpsPeer
from tests.peers.net import free_port
from tests.peers.sink import RecordingSink

from .conftest import GATEWAY, SENDER, START, Gateway, MxServers

DAY = 86400.0


def _reports(sink: RecordingSink) -> list[tuple[email.message.EmailMessage, dict[str, Any]]]:
    """The TLS reports a sink received: each message and its decompressed JSON."""
    out = []
    for got in sink.messages:
        msg = email.message_from_bytes(got.data, policy=email.policy.SMTP)
        if msg.get("TLS-Report-Domain") is None:
            continue
        [part] = [p for p in msg.walk() if p.get_content_type() == "application/tlsrpt+gzip"]
        out.append((msg, json.loads(gzip.decompress(part.get_payload(decode=True)))))
    return out


def _send_due(gw: SyncHarness) -> list[str]:
    return gw.run(gw.plugin("direct").reports.send_due())


def _policies(report: dict[str, Any]) -> dict[tuple[str, tuple[str, ...]], dict[str, Any]]:
    return {(p["policy"]["policy-type"], tuple(p["policy"].get("mx-host", []))): p for p in report["policies"]}


def test_daily_report_by_mail_and_https(signed_dns: SignedDns, mx_servers: MxServers, https_peer: HttpsPeer,
                                        gateway: Gateway) -> None:
    """Two messages to a DANE domain (its first MX mismatches), one to an MTA-STS domain; a day later one
    report per domain goes out through mailpipe itself (and by HTTPS POST); the next day, without traffic,
    nothing is sent."""
    sinks = mx_servers("a", "b", "n")
    gw = gateway(SignedDns.server(signed_dns.validating), dnssec="validating", connection_reuse=False)
    for rcpt in ("bob@both.secure.test", "carol@both.secure.test", "dave@stsonly.secure.test"):
        gw.submit(SENDER, [rcpt])
    gw.deliver()
    assert len(sinks["a"].messages) == 2
    assert _send_due(gw) == []  # the day has not ended

    gw.clock.advance(DAY)
    sent = _send_due(gw)
    assert len(sent) == 2
    gw.deliver()  # the reports are queued mail, delivered like any other
    reports = {msg["TLS-Report-Domain"]: (msg, body) for msg, body in _reports(sinks["n"])}
    assert set(reports) == {"both.secure.test", "stsonly.secure.test"}

    msg, body = reports["both.secure.test"]
    assert msg["TLS-Report-Submitter"] == GATEWAY and msg["To"] == "tlsrpt@reports.secure.test"
    assert msg.get_content_type() == "multipart/report" and msg.get_param("report-type") == "tlsrpt"
    assert f"Report-ID: <{body['report-id']}>" in msg["Subject"]
    assert body["organization-name"] == GATEWAY
    assert body["date-range"] == {"start-datetime": "2027-01-15T00:00:00Z", "end-datetime": "2027-01-15T23:59:59Z"}
    policies = _policies(body)
    good = policies[("tlsa", ("a.hosts.test",))]
    assert good["summary"] == {"total-successful-session-count": 2, "total-failure-session-count": 0}
    assert good["policy"]["policy-domain"] == "both.secure.test" and good["policy"]["policy-string"][0][:6] == "3 1 1 "
    bad = policies[("tlsa", ("b.hosts.test",))]
    assert bad["summary"] == {"total-successful-session-count": 0, "total-failure-session-count": 2}
    [detail] = bad["failure-details"]
    assert (detail["result-type"], detail["receiving-mx-hostname"], detail["failed-session-count"]) == (
        "tlsa-invalid", "b.hosts.test", 2)
    assert detail["receiving-ip"] == "127.0.1.32" and detail["sending-mta-ip"].startswith("127.")

    _, body = reports["stsonly.secure.test"]
    [sts] = body["policies"]
    assert sts["policy"]["policy-type"] == "sts" and sts["policy"]["mx-host"] == ["*.hosts.test"]
    assert "mode: enforce" in sts["policy"]["policy-string"]
    assert sts["summary"] == {"total-successful-session-count": 1, "total-failure-session-count": 0}

    [post] = https_peer.posts("/tlsrpt")
    assert post.headers["Content-Type"] == "application/tlsrpt+gzip"
    assert json.loads(gzip.decompress(post.body))["report-id"] == reports["both.secure.test"][1]["report-id"]

    gw.clock.advance(DAY)  # a day without traffic to either domain
    assert _send_due(gw) == []
    gw.deliver()
    assert len(_reports(sinks["n"])) == 2 and len(https_peer.posts("/tlsrpt")) == 1


def test_counts_survive_a_restart(signed_dns: SignedDns, mx_servers: MxServers, gateway: Gateway) -> None:
    """Counts are stored in the queue database when the gateway stops; the restarted one reports them."""
    sinks = mx_servers("a", "n")
    gw = gateway(SignedDns.server(signed_dns.validating), dnssec="validating")
    gw.submit(SENDER, ["bob@both.secure.test"])
    gw.deliver()
    gw.close()
    later = gateway(SignedDns.server(signed_dns.validating), dnssec="validating", start=START + DAY)
    assert len(_send_due(later)) == 1
    later.deliver()
    [(_, body)] = _reports(sinks["n"])
    good = _policies(body)[("tlsa", ("a.hosts.test",))]
    assert good["summary"]["total-successful-session-count"] == 1


def test_no_reports_when_turned_off(signed_dns: SignedDns, mx_servers: MxServers, gateway: Gateway) -> None:
    """``tls_reports: false``: nothing is counted or sent (policy failures are still events)."""
    mx_servers("a", "b", "n")
    gw = gateway(SignedDns.server(signed_dns.validating), dnssec="validating", tls_reports=False)
    gw.submit(SENDER, ["bob@both.secure.test"])
    gw.deliver()
    assert gw.plugin("direct").reports is None
    assert [e.kind for e in gw.run(gw.h.events("tls.failure"))] == ["tls.failure.tlsa-invalid"]


def test_metrics_count_policy_failures_per_type(signed_dns: SignedDns, mx_servers: MxServers,
                                                gateway: Gateway) -> None:
    """The metrics plugin counts the ``tls.failure.<type>`` events: one series per failure type."""
    mx_servers("a", "b", "s")
    port = free_port()
    gw = gateway(SignedDns.server(signed_dns.validating), dnssec="validating", connection_reuse=False,
                 before=[{"metrics": {"listen": f"127.0.0.1:{port}"}}])
    for rcpt in ("bob@both.secure.test", "carol@both.secure.test", "dave@stripped.secure.test"):
        gw.submit(SENDER, [rcpt])
    gw.deliver()
    page = gw.run(asyncio.to_thread(httpx.get, f"http://127.0.0.1:{port}/metrics", timeout=10)).text
    assert 'mailpipe_events_total{kind="tls.failure.tlsa-invalid",level="warning"} 2.0' in page
    assert 'mailpipe_events_total{kind="tls.failure.starttls-not-supported",level="warning"} 1.0' in page
