"""Connection reuse to the smarthost: one connection for many messages, caps, never shared between logins.

Counted where it happens: at the SMTP server, which logs every TCP connection
(open, close, QUIT, logins, messages carried).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.peers.fixtures import PEER_USERS
from tests.peers.harness import Harness, until
from tests.peers.sink import RecordingSink

from .helpers import smarthost_config


def sink_with_users(**server_kwargs: Any) -> RecordingSink:
    return RecordingSink("127.0.1.60", auth=dict(PEER_USERS), auth_require_tls=False, server_kwargs=server_kwargs)


def plain_login(sink: RecordingSink, **extra: Any) -> dict[str, Any]:
    return {"server": f"{sink.host}:{sink.port}", "tls": "none", "allow_plaintext_auth": True,
            "auth": {"mode": "login", "username": "gateway", "password": PEER_USERS["gateway"]}, **extra}


def test_many_messages_share_few_connections(workdir: Path) -> None:
    """Ten messages delivered at once over at most max_connections connections, each logged in once,
    kept open for the next messages and closed with QUIT at shutdown."""
    with sink_with_users() as sink:
        config = smarthost_config(workdir, plain_login(sink, max_connections=2))

        async def scenario() -> None:
            async with Harness(workdir, config) as h:
                ids = [await h.submit("alice@example.org", [f"r{i}@remote.test"]) for i in range(10)]
                await h.deliver()
                for i, mid in enumerate(ids):
                    assert await h.states(mid) == {f"r{i}@remote.test": "delivered"}
                assert 1 <= len(sink.connections) <= 2 and sink.peak <= 2
                assert sink.live == len(sink.connections), "a connection was not kept for the next messages"

        asyncio.run(scenario())
        got = sink.wait_for(10)
        sink.wait(lambda s: s.live == 0, 10, "shutdown to close the kept connections")
    assert sum(c.messages for c in sink.connections) == 10
    assert [c.logins for c in sink.connections] == [["gateway"]] * len(sink.connections)
    assert all(c.quit for c in sink.connections), sink.connections
    assert len({m.peer for m in got}) == len(sink.connections)
    assert {m.auth_login for m in got} == {"gateway"}


def test_cap_on_messages_per_connection(workdir: Path) -> None:
    """max_messages_per_connection 2, one connection at a time: five messages need three connections."""
    with sink_with_users() as sink:
        config = smarthost_config(workdir, plain_login(sink, max_connections=1, max_messages_per_connection=2))

        async def scenario() -> None:
            async with Harness(workdir, config) as h:
                for i in range(5):
                    await h.submit("alice@example.org", [f"r{i}@remote.test"])
                await h.deliver()

        asyncio.run(scenario())
        got = sink.wait_for(5)
        sink.wait(lambda s: s.live == 0, 10, "every connection to close")
    assert sorted(c.messages for c in sink.connections) == [1, 2, 2]
    assert sink.peak == 1
    peers = [m.peer for m in got]
    assert sorted(peers.count(p) for p in set(peers)) == [1, 2, 2]


def test_different_senders_never_share_a_connection(workdir: Path) -> None:
    """sender-account: every connection carries the mail of one login only."""
    accounts = [{"address": f"{u}@example.org", "username": u, "password": PEER_USERS[u]} for u in ("alice", "bob")]
    with sink_with_users() as sink:
        config = smarthost_config(workdir, {
            "server": f"{sink.host}:{sink.port}", "tls": "none", "allow_plaintext_auth": True,
            "max_connections": 1, "auth": {"mode": "sender-account"}}, accounts=accounts)

        async def scenario() -> None:
            async with Harness(workdir, config) as h:
                for i in range(6):
                    await h.submit(("alice", "bob")[i % 2] + "@example.org", [f"r{i}@remote.test"])
                await h.deliver()

        asyncio.run(scenario())
        got = sink.wait_for(6)
    assert {tuple(c.logins) for c in sink.connections} == {("alice",), ("bob",)}
    logins_per_connection: dict[Any, set[str | None]] = {}
    for m in got:
        logins_per_connection.setdefault(m.peer, set()).add(m.auth_login)
        assert m.auth_login == m.mail_from.split("@")[0]
    assert all(len(v) == 1 for v in logins_per_connection.values())
    assert {next(iter(v)) for v in logins_per_connection.values()} == {"alice", "bob"}


def test_kept_connections_close_after_idling_and_at_shutdown(workdir: Path) -> None:
    """idle_timeout 0.3s: the server sees the kept connection QUIT; a later message opens a new one,
    which shutdown closes with QUIT too."""
    with sink_with_users() as sink:
        config = smarthost_config(workdir, plain_login(sink, idle_timeout="0.3s"))

        async def scenario() -> None:
            async with Harness(workdir, config) as h:
                await h.submit("alice@example.org", ["r1@remote.test"])
                await h.deliver()
                assert (len(sink.connections), sink.live) == (1, 1)  # kept after the message
                await until(lambda: sink.live == 0, 10, "the idle timeout to close the connection")
                assert sink.connections[0].quit, "closed without QUIT"
                await h.submit("alice@example.org", ["r2@remote.test"])
                await h.deliver()
                assert (len(sink.connections), sink.live) == (2, 1)

        asyncio.run(scenario())
        sink.wait(lambda s: s.live == 0, 10, "shutdown to close the last connection")
        assert [m.rcpt_tos for m in sink.wait_for(2)] == [["r1@remote.test"], ["r2@remote.test"]]
    assert [(c.messages, c.quit) for c in sink.connections] == [(1, True), (1, True)]


def test_connection_closed_by_the_server_is_replaced(workdir: Path) -> None:
    """An idle connection the server dropped (its idle timeout) is replaced; the message still goes."""
    with sink_with_users(timeout=0.3) as sink:
        config = smarthost_config(workdir, plain_login(sink))

        async def scenario() -> None:
            async with Harness(workdir, config) as h:
                await h.submit("alice@example.org", ["r1@remote.test"])
                await h.deliver()
                await until(lambda: sink.live == 0, 10, "the server to time the session out")
                assert not sink.connections[0].quit  # the server hung up, not the client
                mid = await h.submit("alice@example.org", ["r2@remote.test"])
                await h.deliver()
                assert await h.states(mid) == {"r2@remote.test": "delivered"}
                assert len(sink.connections) == 2

        asyncio.run(scenario())
        assert len(sink.wait_for(2)) == 2
    assert [c.messages for c in sink.connections] == [1, 1]
