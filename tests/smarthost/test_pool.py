"""Connection reuse to the smarthost: one connection for many messages, caps, never shared between logins."""

from __future__ import annotations

import asyncio
import time

from tests.peers.fixtures import PEER_USERS
from tests.peers.sink import RecordingSink

from .harness import GatewayHarness, smarthost_config


def sink_with_users(**server_kwargs) -> RecordingSink:
    return RecordingSink("127.0.1.60", auth=dict(PEER_USERS), auth_require_tls=False, server_kwargs=server_kwargs)


def plain_login(sink, **extra) -> dict:
    return {"server": f"{sink.host}:{sink.port}", "tls": "none", "allow_plaintext_auth": True,
            "auth": {"mode": "login", "username": "gateway", "password": PEER_USERS["gateway"]}, **extra}


async def until(condition, timeout: float = 10.0) -> None:
    """Wait (bounded) until ``condition()`` is true, yielding to the event loop in between."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def test_many_messages_share_few_connections(workdir):
    """Ten messages delivered at once over at most max_connections connections, each logged in once."""
    with sink_with_users() as sink:
        config = smarthost_config(workdir, plain_login(sink, max_connections=2))

        async def scenario():
            async with GatewayHarness(workdir, config) as h:
                for i in range(10):
                    await h.submit("alice@example.org", [f"r{i}@remote.test"])
                await h.run()
                assert h.plugin.pool.opened <= 2
                assert h.plugin.pool.idle_count == h.plugin.pool.opened  # kept for the next messages
                return h.plugin.pool.opened

        opened = asyncio.run(scenario())
        got = sink.wait_for(10)
    assert len({m.peer for m in got}) == opened
    assert {m.auth_login for m in got} == {"gateway"}


def test_cap_on_messages_per_connection(workdir):
    """max_messages_per_connection 2, one connection at a time: five messages need three connections."""
    with sink_with_users() as sink:
        config = smarthost_config(workdir, plain_login(sink, max_connections=1, max_messages_per_connection=2))

        async def scenario():
            async with GatewayHarness(workdir, config) as h:
                for i in range(5):
                    await h.submit("alice@example.org", [f"r{i}@remote.test"])
                await h.run()
                return h.plugin.pool.opened

        assert asyncio.run(scenario()) == 3
        got = sink.wait_for(5)
    peers = [m.peer for m in got]
    assert sorted(peers.count(p) for p in set(peers)) == [1, 2, 2]


def test_different_senders_never_share_a_connection(workdir):
    """sender-account: every connection carries the mail of one login only."""
    accounts = [{"address": f"{u}@example.org", "username": u, "password": PEER_USERS[u]} for u in ("alice", "bob")]
    with sink_with_users() as sink:
        config = smarthost_config(workdir, {
            "server": f"{sink.host}:{sink.port}", "tls": "none", "allow_plaintext_auth": True,
            "max_connections": 1, "auth": {"mode": "sender-account"}}, accounts=accounts)

        async def scenario():
            async with GatewayHarness(workdir, config) as h:
                for i in range(6):
                    await h.submit(("alice", "bob")[i % 2] + "@example.org", [f"r{i}@remote.test"])
                await h.run()

        asyncio.run(scenario())
        got = sink.wait_for(6)
    logins_per_connection: dict = {}
    for m in got:
        logins_per_connection.setdefault(m.peer, set()).add(m.auth_login)
        assert m.auth_login == m.mail_from.split("@")[0]
    assert all(len(v) == 1 for v in logins_per_connection.values())
    assert {next(iter(v)) for v in logins_per_connection.values()} == {"alice", "bob"}


def test_idle_connections_close_after_idle_timeout_and_at_shutdown(workdir):
    with sink_with_users() as sink:
        config = smarthost_config(workdir, plain_login(sink, idle_timeout="0.3s"))

        async def scenario():
            async with GatewayHarness(workdir, config) as h:
                await h.submit("alice@example.org", ["r1@remote.test"])
                await h.run()
                pool = h.plugin.pool
                assert (pool.count, pool.idle_count) == (1, 1)
                await until(lambda: pool.count == 0)  # the idle timeout closed it
                await h.submit("alice@example.org", ["r2@remote.test"])
                await h.run()
                assert (pool.count, pool.opened) == (1, 2)
            assert (pool.count, pool.idle_count) == (0, 0)  # shutdown closed the last one

        asyncio.run(scenario())
        assert len(sink.wait_for(2)) == 2


def test_connection_closed_by_the_server_is_replaced(workdir):
    """An idle connection the server dropped (its idle timeout) is replaced; the message still goes."""
    with sink_with_users(timeout=0.3) as sink:
        config = smarthost_config(workdir, plain_login(sink))

        async def scenario():
            async with GatewayHarness(workdir, config) as h:
                await h.submit("alice@example.org", ["r1@remote.test"])
                await h.run()
                pool = h.plugin.pool
                (conn,) = [c for conns in pool._idle.values() for c in conns]
                await until(lambda: not conn.client.is_connected)  # the server timed the session out
                mid = await h.submit("alice@example.org", ["r2@remote.test"])
                await h.run()
                assert await h.states(mid) == {"r2@remote.test": "delivered"}
                assert pool.opened == 2

        asyncio.run(scenario())
        assert len(sink.wait_for(2)) == 2
