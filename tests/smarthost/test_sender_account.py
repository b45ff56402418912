"""mode: sender-account against the real Postfix/Dovecot ISP: each message under its own sender's login."""

from __future__ import annotations

import asyncio
import email
from pathlib import Path

from tests.peers.certs import TestPKI
from tests.peers.fixtures import PEER_USERS
from tests.peers.harness import Harness
from tests.peers.postfix import PostfixPeer

from .helpers import smarthost_config

ACCOUNTS = [
    {"address": "alice@example.org", "username": "alice", "password": PEER_USERS["alice"]},
    {"address": "Bob@Example.org", "username": "bob", "password": PEER_USERS["bob"]},
]


def sender_account_config(workdir, postfix_isp, pki) -> dict:
    """The gateway in sender-account mode against the Postfix ISP (submission port, STARTTLS, PLAIN)."""
    return smarthost_config(workdir, {
        "server": postfix_isp.host, "port": postfix_isp.submission_port, "tls": "starttls",
        "ca_file": str(pki.ca_file), "auth": {"mode": "sender-account", "mechanism": "plain"},
    }, accounts=ACCOUNTS)


def authenticated_sender(data: bytes) -> str:
    """The SASL login Postfix wrote into its Received header."""
    received = email.message_from_bytes(data).get_all("Received")
    for header in received:
        if "Authenticated sender:" in header:
            return " ".join(header.split()).split("Authenticated sender: ", 1)[1].split(")")[0]
    raise AssertionError(f"no Authenticated sender in {received}")


def test_each_sender_logs_in_with_its_own_account(workdir: Path, postfix_isp: PostfixPeer, pki: TestPKI) -> None:
    """Two senders, three messages: every message arrives under its own sender's login.

    A third sender has no Internet Mail Account: it is not sent under anybody
    else's login; it stays queued (deferred, 451 4.7.1) and one event says so.
    """
    config = sender_account_config(workdir, postfix_isp, pki)

    async def scenario():
        async with Harness(workdir, config) as h:
            a1 = await h.submit("alice@example.org", ["r1@remote.test"])
            b1 = await h.submit("bob@example.org", ["r2@remote.test"])  # case differs from the account
            a2 = await h.submit("alice@example.org", ["r3@remote.test"])
            c1 = await h.submit("carol@example.org", ["r4@remote.test"])
            c2 = await h.submit("carol@example.org", ["r5@remote.test"])
            await h.deliver()
            for mid in (a1, b1, a2):
                assert set((await h.states(mid)).values()) == {"delivered"}
            for mid in (c1, c2):
                assert set((await h.states(mid)).values()) == {"deferred"}
            attempt = (await h.last_attempts(c1))["r4@remote.test"]
            assert (attempt.code, attempt.enhanced) == (451, "4.7.1")
            assert "no Internet Mail Account for sender carol@example.org" in attempt.text
            events = await h.events("smarthost.no_account")
            assert len(events) == 1, events  # one event for the sender, not one per message
            assert "carol@example.org" in events[0].text

    asyncio.run(scenario())
    got = postfix_isp.sink.wait_for(3)
    by_rcpt = {m.rcpt_tos[0]: authenticated_sender(m.data) for m in got}
    assert by_rcpt == {"r1@remote.test": "alice", "r2@remote.test": "bob", "r3@remote.test": "alice"}
    assert sorted(x.username for x in postfix_isp.sasl_logins()) == ["alice", "alice", "bob"]
    assert not any("carol" in m.data.decode() for m in got)


def test_reports_from_the_null_sender_go_under_their_recipients_login(
        workdir: Path, postfix_isp: PostfixPeer, pki: TestPKI,
) -> None:
    """mailpipe's own reports (MAIL FROM:<>) to alice leave under alice's login; none to carol (no account)."""
    config = sender_account_config(workdir, postfix_isp, pki)

    async def scenario():
        async with Harness(workdir, config) as h:
            to_alice = await h.submit("", ["alice@example.org"])
            to_carol = await h.submit("", ["carol@example.org"])
            await h.deliver()
            assert await h.states(to_alice) == {"alice@example.org": "delivered"}
            assert await h.states(to_carol) == {"carol@example.org": "deferred"}

    asyncio.run(scenario())
    got = postfix_isp.sink.wait_for(1)
    assert got[0].mail_from == "<>" and got[0].rcpt_tos == ["alice@example.org"]
    assert authenticated_sender(got[0].data) == "alice"
