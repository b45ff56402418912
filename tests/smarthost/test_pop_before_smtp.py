"""mode: pop-before-smtp with the real Dovecot pop3d and an ISP SMTP server that checks POP3 logins."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.peers.certs import TestPKI
from tests.peers.dovecot import DovecotPeer
from tests.peers.fixtures import PEER_USERS
from tests.peers.harness import Harness

from .helpers import smarthost_config
from .popgate import PopGateSink

GATE_HOST = "127.0.1.40"


def pop_config(workdir, gate, dovecot, pki, *, tls: str, apop: bool = False, password: str | None = None,
               **extra):
    port = dovecot.pop3s_port if tls == "implicit" else dovecot.pop3_port
    return smarthost_config(workdir, {
        "server": f"{gate.host}:{gate.port}", "tls": "none",
        "auth": {"mode": "pop-before-smtp", "pop_login_window": "10m"}, **extra,
    }, accounts=[
        {"address": "alice@example.org", "username": "alice", "password": password or PEER_USERS["alice"],
         "pop3": {"server": dovecot.host, "port": port, "tls": tls, "ca_file": str(pki.ca_file), "apop": apop}},
        {"address": "bob@example.org", "username": "bob", "password": PEER_USERS["bob"]},
    ])


@pytest.mark.parametrize(("tls", "apop", "method"), [
    ("implicit", False, "PLAIN"),   # POP3S, USER/PASS
    ("starttls", False, "PLAIN"),   # STLS, USER/PASS
    ("starttls", True, "APOP"),     # STLS, APOP
    ("none", True, "APOP"),         # plain POP3: APOP sends no password, so no opt-out is needed
])
def test_pop3_login_comes_before_the_smtp_session(
        workdir: Path, dovecot_peer: DovecotPeer, pki: TestPKI, tls: str, apop: bool, method: str,
) -> None:
    """The first account logs into POP3, then mail goes out; within the window no new login is
    made; once the window has passed the next delivery logs in again first."""
    with PopGateSink(GATE_HOST, dovecot_peer) as gate:
        config = pop_config(workdir, gate, dovecot_peer, pki, tls=tls, apop=apop)

        async def scenario():
            async with Harness(workdir, config) as h:
                first = await h.submit("bob@example.org", ["r1@remote.test"])
                await h.deliver()
                assert await h.states(first) == {"r1@remote.test": "delivered"}
                second = await h.submit("bob@example.org", ["r2@remote.test"])
                await h.deliver()
                assert await h.states(second) == {"r2@remote.test": "delivered"}
                assert len(dovecot_peer.pop3_logins()) == 1  # inside the window: no new login
                h.clock.advance(11 * 60)
                third = await h.submit("bob@example.org", ["r3@remote.test"])
                await h.deliver()
                assert await h.states(third) == {"r3@remote.test": "delivered"}
                return await h.events("smarthost.pop3_login")

        events = asyncio.run(scenario())
        got = gate.wait_for(3)
    logins = dovecot_peer.pop3_logins()
    assert [(x.user, x.method, x.tls) for x in logins] == [("alice", method, tls != "none")] * 2
    assert gate.gate.refused == []
    assert logins[0].timestamp < gate.gate.mail_times[0]
    assert logins[1].timestamp > gate.gate.mail_times[1]
    assert logins[1].timestamp < gate.gate.mail_times[2]
    assert [m.rcpt_tos for m in got] == [["r1@remote.test"], ["r2@remote.test"], ["r3@remote.test"]]
    assert len(events) == 2 and "alice" in events[0].text


def test_without_pop3_login_the_isp_refuses(workdir: Path, dovecot_peer: DovecotPeer) -> None:
    """Control: the same ISP server refuses MAIL from a client that did not log into POP3 (mode: none).

    The 530 is a configuration problem, so the message stays queued and an event says so."""
    with PopGateSink(GATE_HOST, dovecot_peer) as gate:
        config = smarthost_config(workdir, {"server": f"{gate.host}:{gate.port}", "tls": "none"})

        async def scenario():
            async with Harness(workdir, config) as h:
                mid = await h.submit("bob@example.org", ["r1@remote.test"])
                await h.deliver()
                assert await h.states(mid) == {"r1@remote.test": "deferred"}
                attempt = (await h.last_attempts(mid))["r1@remote.test"]
                assert (attempt.code, attempt.enhanced) == (451, "4.7.0")
                assert "530 5.7.0" in attempt.text and "log into your mailbox with POP3 first" in attempt.text
                assert len(await h.events("smarthost.auth_required")) == 1

        asyncio.run(scenario())
        assert gate.gate.refused == ["bob@example.org"]
        assert gate.messages == []


def test_failed_pop3_login_sends_nothing(workdir: Path, dovecot_peer: DovecotPeer, pki: TestPKI) -> None:
    """A wrong POP3 password: nothing reaches the SMTP server, the mail stays queued, one event
    says why (without the password), for however many messages wait."""
    wrong = "not-alices-Pa55word"
    with PopGateSink(GATE_HOST, dovecot_peer) as gate:
        config = pop_config(workdir, gate, dovecot_peer, pki, tls="implicit", password=wrong)

        async def scenario():
            async with Harness(workdir, config) as h:
                ids = [await h.submit("bob@example.org", [f"r{i}@remote.test"]) for i in range(3)]
                await h.deliver()
                for i, mid in enumerate(ids):
                    assert await h.states(mid) == {f"r{i}@remote.test": "deferred"}
                attempt = (await h.last_attempts(ids[0]))["r0@remote.test"]
                assert attempt.code == 451
                assert "POP3 login as alice" in attempt.text and "failed at PASS" in attempt.text
                return await h.events("smarthost")

        events = asyncio.run(scenario())
        assert gate.messages == [] and gate.gate.refused == []
    failed = [e for e in events if e.kind == "smarthost.pop3_login_failed"]
    assert len(failed) == 1 and failed[0].level == "error"
    assert "nothing is sent through the smarthost until it succeeds" in failed[0].text
    assert all(wrong not in e.text and wrong not in str(e.data) for e in events)
    assert dovecot_peer.pop3_logins() == []
