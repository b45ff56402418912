"""SMTP AUTH against a real ISP-like Postfix (SASL through Dovecot), over STARTTLS and implicit TLS.

The Postfix of tests/peers relays only after AUTH and records the login in the
Received header ("Authenticated sender: USER") and in its log
(``sasl_method=... sasl_username=...``), so each test can tell which mechanism
and which login carried the message.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from tests.peers.certs import TestPKI
from tests.peers.fixtures import PEER_USERS
from tests.peers.harness import Harness
from tests.peers.net import wait_until
from tests.peers.postfix import PostfixPeer

from .helpers import smarthost_config


def login_config(workdir, postfix, pki, *, port: int, tls: str, mechanism: str, **extra):
    return smarthost_config(workdir, {
        "server": postfix.host, "port": port, "tls": tls, "ca_file": str(pki.ca_file),
        "auth": {"mode": "login", "mechanism": mechanism, "username": "gateway",
                 "password": PEER_USERS["gateway"]},
        **extra,
    })


CASES = [
    ("submission", "starttls", "plain", "PLAIN"),
    ("submission", "starttls", "login", "LOGIN"),
    ("smtps", "implicit", "plain", "PLAIN"),
    ("smtps", "implicit", "login", "LOGIN"),
    ("submission", "starttls", "cram-md5", "CRAM-MD5"),
    ("smtps", "implicit", "auto", "CRAM-MD5"),
]


@pytest.mark.parametrize(("listener", "tls", "mechanism", "seen"), CASES)
def test_login_mode_delivers_through_postfix(
        workdir: Path, postfix_isp: PostfixPeer, pki: TestPKI, listener: str, tls: str, mechanism: str, seen: str,
) -> None:
    """mode: login with each mechanism over STARTTLS (587-style) and implicit TLS (465-style).

    ``auto`` picks the strongest mechanism Postfix offers through Dovecot (CRAM-MD5).
    """
    port = postfix_isp.submission_port if listener == "submission" else postfix_isp.smtps_port
    config = login_config(workdir, postfix_isp, pki, port=port, tls=tls, mechanism=mechanism)

    async def scenario():
        async with Harness(workdir, config) as h:
            mid = await h.submit("alice@example.org", ["rcpt@remote.test"], subject="from alice@example.org")
            await h.deliver()
            assert await h.states(mid) == {"rcpt@remote.test": "delivered"}

    asyncio.run(scenario())
    got = postfix_isp.sink.wait_for(1)
    assert got[0].rcpt_tos == ["rcpt@remote.test"]
    assert b"(Authenticated sender: gateway)" in got[0].data
    assert b"Subject: from alice@example.org" in got[0].data
    logins = postfix_isp.sasl_logins()
    assert [(x.method, x.username) for x in logins] == [(seen, "gateway")]
    assert f"/{listener}/" in logins[0].service


def test_a_kept_session_carries_the_next_messages_pipelined_through_postfix(
        workdir: Path, postfix_isp: PostfixPeer, pki: TestPKI,
) -> None:
    """Three messages one after the other over one STARTTLS session with one login: each later one opens
    with RSET, MAIL, RCPT and DATA in one write (Postfix offers PIPELINING); a group worded wrong or
    a reply read out of step would show as a refused or deferred message here."""
    config = login_config(workdir, postfix_isp, pki, port=postfix_isp.submission_port, tls="starttls",
                          mechanism="plain")

    async def scenario():
        async with Harness(workdir, config) as h:
            for i in range(3):
                mid = await h.submit("alice@example.org", [f"rcpt{i}@remote.test", f"other{i}@remote.test"],
                                     subject=f"kept {i}")
                await h.deliver()
                assert await h.states(mid) == {f"rcpt{i}@remote.test": "delivered",
                                               f"other{i}@remote.test": "delivered"}

    asyncio.run(scenario())
    got = postfix_isp.sink.wait_for(3)
    assert sorted(sorted(m.rcpt_tos) for m in got) == [[f"other{i}@remote.test", f"rcpt{i}@remote.test"]
                                                        for i in range(3)]
    # One smtpd process took all three, in one connection (its one session with mail): one login, two RSETs.
    logins = postfix_isp.sasl_logins()[-3:]
    assert [(x.method, x.username) for x in logins] == [("PLAIN", "gateway")] * 3
    pids = {re.search(r"smtpd\[(\d+)\]", x.line).group(1) for x in logins}
    assert len(pids) == 1
    end = f"smtpd[{pids.pop()}]: disconnect from"

    def ends() -> list[str]:
        return [line for line in postfix_isp.log_text().splitlines() if end in line and " mail=" in line]

    wait_until(ends, 10, "smtpd's disconnect line")
    assert len(ends()) == 1 and "auth=1 mail=3 rcpt=6 data=3 rset=2 quit=1" in ends()[0], ends()
