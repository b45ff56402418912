"""The texts of the policies, parsed as RFC 8461 and RFC 8460 say: MTA-STS TXT records and policy files,
MX patterns, ``_smtp._tls`` rua, and the TLS-report counts' merging. No network: these are parsers."""

from __future__ import annotations

import pytest

from mailpipe.plugins.direct.mtasts import StsError, mx_matches, parse_policy, txt_id
from mailpipe.plugins.direct.reports import Rua, parse_rua
from mailpipe.plugins.direct.security import ReportPolicy
from mailpipe.plugins.direct.tlsrpt import DomainDay, TlsCounters, day_of


def test_txt_record_id() -> None:
    assert txt_id(["v=STSv1; id=20270115T01;"]) == "20270115T01"
    assert txt_id(["some other text"]) is None
    for bad in (["v=STSv1; id=has-dash"], ["v=STSv1;"], ["v=STSv1; id=1", "v=STSv1; id=2"]):
        with pytest.raises(StsError):
            txt_id(bad)


def test_policy_file() -> None:
    policy = parse_policy("version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\nmx: *.example.net\r\n"
                          "max_age: 9999999999\r\n", "1", 1000.0)
    assert (policy.mode, policy.mx, policy.max_age) == ("enforce", ("mail.example.com", "*.example.net"), 31557600)
    assert policy.allows("mail.example.com") and policy.allows("MX1.example.net.")
    assert not policy.allows("a.b.example.net") and not policy.allows("example.net")
    assert parse_policy("version: STSv1\nmode: none\nmax_age: 60\n", "1", 0).mx == ()
    for bad in ("version: STSv2\nmode: enforce\nmx: a\nmax_age: 1\n", "version: STSv1\nmode: strict\nmx: a\nmax_age: 1",
                "version: STSv1\nmode: enforce\nmax_age: 1\n", "version: STSv1\nmode: enforce\nmx: a\nmax_age: -1",
                "<html>not a policy</html>"):
        with pytest.raises(StsError):
            parse_policy(bad, "1", 0)


def test_mx_patterns() -> None:
    assert mx_matches("*.example.com", "mx.example.com")
    assert not mx_matches("*.example.com", "example.com") and not mx_matches("*.example.com", "x.mx.example.com")
    assert mx_matches("MX.Example.com.", "mx.example.com") and not mx_matches("mx.example.com", "mx2.example.com")


def test_rua() -> None:
    assert parse_rua(["v=TLSRPTv1; rua=mailto:tls@example.com,https://r.example.com/up"]) == Rua(
        ("tls@example.com",), ("https://r.example.com/up",))
    assert parse_rua(["v=TLSRPTv1;rua=mailto:a%2Bb@example.com"]) == Rua(("a+b@example.com",), ())
    assert parse_rua(["v=spf1 -all"]) is None
    assert parse_rua(["v=TLSRPTv1; rua=ftp://x"]) is None


def test_counts_merge_by_policy_and_failure() -> None:
    counters = TlsCounters()
    policy = ReportPolicy("sts", ("version: STSv1",), ("*.example.com",))
    counters.success(86400.0 * 3, "example.com", policy)
    counters.failure(86400.0 * 3, "example.com", policy, "certificate-expired", mx_host="mx.example.com")
    counters.failure(86400.0 * 3 + 10, "example.com", policy, "certificate-expired", mx_host="mx.example.com",
                     reason="another text")
    [(key, day)] = counters.take().items()
    assert key == (day_of(86400.0 * 3), "example.com") and counters.take() == {}
    merged = DomainDay.from_json(day.to_json()).merge(day)
    [entry] = merged.policies.values()
    assert (entry["success"], entry["failure"]) == (2, 4)
    [detail] = entry["details"].values()
    assert detail["failed-session-count"] == 4 and detail["result-type"] == "certificate-expired"


def test_options_and_their_defaults() -> None:
    """``dane`` follows ``dnssec`` unless given; DANE without a validating resolver is refused."""
    from pydantic import ValidationError

    from mailpipe.plugins.direct.options import DirectOptions

    assert DirectOptions().dane_mode == "off" and DirectOptions().mta_sts and DirectOptions().tls_reports
    assert DirectOptions(dnssec="validating").dane_mode == "opportunistic"
    assert DirectOptions(dnssec="validating", dane="off").dane_mode == "off"
    assert DirectOptions().mta_sts_port == 443
    for bad in ({"dane": "required"}, {"dane": "opportunistic", "dnssec": "none"}, {"tls_reports_from": "nobody"}):
        with pytest.raises(ValidationError):
            DirectOptions(**bad)
