"""The one outbound SMTP client (plugins/outbound): sessions, TLS policies, the pool, the error vocabulary.

Every peer is real and on loopback: RecordingSink (aiosmtpd), BadServer, and a
few lines of asyncio server where a scripted greeting is all that is needed.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import time
import warnings
from collections.abc import Awaitable, Callable

import pytest

from mailpipe.core.errors import Reply
from mailpipe.core.message import Message, Outcome, Recipient
from mailpipe.plugins.direct.hosts import connect_first
from mailpipe.plugins.outbound.pool import ConnectionPool, PoolKey
from mailpipe.plugins.outbound.replies import OutboundError, none_usable
from mailpipe.plugins.outbound.session import ClientSettings, Session, open_session
from mailpipe.plugins.outbound.tls import TlsPolicy
from mailpipe.plugins.outbound.transaction import reusable, send
from tests.peers.badserver import BadServer
from tests.peers.fixtures import PEER_USERS
from tests.peers.net import free_port
from tests.peers.sink import RecordingSink

PLAIN = ClientSettings("client.test", 5.0, TlsPolicy("none"))
BODY = b"From: a@origin.test\r\nTo: b@dest.test\r\nSubject: outbound\r\n\r\nHello.\r\n"


def message(*recipients: str) -> Message:
    return Message("m1", "a@origin.test", [Recipient(r) for r in recipients], time.time(), size=len(BODY))


def tls_settings(mode: str, **policy) -> ClientSettings:
    return ClientSettings("client.test", 5.0, TlsPolicy(mode, **policy))


def server_context(pki, *, legacy_only: bool = False) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(pki.cert_file), str(pki.key_file))
    if legacy_only:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1  # the client insists on TLS 1.2 or later
    return ctx


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait (bounded) until ``condition()`` is true, yielding to the event loop in between."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def opener(sink: RecordingSink, settings: ClientSettings = PLAIN) -> Callable[[], Awaitable[Session]]:
    return functools.partial(open_session, sink.host, sink.port, settings)


def key(name: str = "sink", identity: tuple[str, ...] = ()) -> PoolKey:
    return PoolKey(name, 25, PLAIN.tls, identity)


def pool(**kw) -> ConnectionPool:
    return ConnectionPool(**{"max_connections": 4, "max_messages": 100, "idle_timeout": 30.0,
                             "probe_timeout": 2.0, **kw})


# -- sessions ---------------------------------------------------------------------------------


def test_session_delivers_and_names_the_peer():
    with RecordingSink() as sink:
        async def scenario():
            session = await opener(sink)()
            results = await send(session, message("b@dest.test"), ["b@dest.test"], BODY, route="t")
            await session.quit()
            return session, results

        session, [result] = asyncio.run(scenario())
        assert sink.wait_for(1)[0].helo == "client.test"
    assert result.outcome is Outcome.DELIVERED and result.remote_host == f"{sink.host}:{sink.port}"
    assert session.peer == f"{sink.host}:{sink.port}" and not session.tls


def test_session_on_a_connected_socket_from_a_connector():
    """direct's way: its connector races the addresses; the session names the host and the address reached."""
    dead = free_port("127.0.0.1")
    with RecordingSink("127.0.0.1") as sink:
        async def scenario():
            connect = functools.partial(connect_first, "mx.test", ["127.0.0.1", "127.0.0.1"], sink.port,
                                        timeout=5, delay=0.3)
            session = await open_session("mx.test", sink.port, PLAIN, connect=connect)
            await session.quit()
            refused = functools.partial(connect_first, "mx.test", ["127.0.0.1", "::1"], dead, timeout=5)
            with pytest.raises(OutboundError) as info:
                await open_session("mx.test", dead, PLAIN, connect=refused)
            return session, info.value

        session, error = asyncio.run(scenario())
    assert (session.peer, session.address) == ("mx.test", "127.0.0.1")
    assert error.reply.enhanced == "4.4.1" and error.next_host
    assert f"127.0.0.1:{dead}" in error.reply.text and f"[::1]:{dead}" in error.reply.text  # every address


def test_required_tls_refuses_a_server_without_starttls():
    with RecordingSink() as sink:
        with pytest.raises(OutboundError) as info:
            asyncio.run(opener(sink, tls_settings("required", verify=False))())
    assert (info.value.reply.code, info.value.reply.enhanced) == (451, "4.7.4")
    assert "does not offer STARTTLS" in info.value.reply.text and info.value.next_host


def test_opportunistic_tls_falls_back_to_plain_text_once_when_the_handshake_fails(pki):
    with RecordingSink("127.0.0.1", tls_context=server_context(pki, legacy_only=True)) as sink:
        async def scenario():
            session = await opener(sink, tls_settings("opportunistic", verify=False))()
            results = await send(session, message("b@dest.test"), ["b@dest.test"], BODY, route="t")
            await session.quit()
            return session, results

        session, [result] = asyncio.run(scenario())
        assert len(sink.wait_for(1)) == 1
    assert result.outcome is Outcome.DELIVERED and not session.tls
    with RecordingSink("127.0.0.1", tls_context=server_context(pki, legacy_only=True)) as sink:
        with pytest.raises(OutboundError) as info:
            asyncio.run(opener(sink, tls_settings("required", verify=False))())
    assert info.value.reply.enhanced == "4.7.5"  # required: no plain-text retry


def test_verified_starttls_checks_the_chain_and_the_server_name(pki):
    """127.0.1.70 is not a name in the certificate: verified only when server_name says which name to check."""
    with RecordingSink("127.0.1.70", tls_context=server_context(pki)) as sink:
        async def scenario():
            good = await opener(sink, tls_settings("required", ca_file=pki.ca_file, server_name="localhost"))()
            await good.quit()
            with pytest.raises(OutboundError) as wrong_name:
                await opener(sink, tls_settings("required", ca_file=pki.ca_file))()
            with pytest.raises(OutboundError) as untrusted:
                await opener(sink, tls_settings("required", server_name="localhost"))()  # system CAs
            unchecked = await opener(sink, tls_settings("required", verify=False))()
            await unchecked.quit()
            return good, wrong_name.value, untrusted.value, unchecked

        good, wrong_name, untrusted, unchecked = asyncio.run(scenario())
    assert good.tls and unchecked.tls
    assert wrong_name.reply.enhanced == untrusted.reply.enhanced == "4.7.5"
    assert "not trusted" in untrusted.reply.text


def test_login_runs_after_tls_and_its_failure_is_not_for_the_next_host():
    with RecordingSink("127.0.0.1", auth=dict(PEER_USERS)) as sink:
        async def login(client, *, host: str) -> str:
            await client.auth_plain("gateway", PEER_USERS["gateway"])
            return "plain"

        async def refused(client, *, host: str) -> str:
            raise OutboundError(Reply(451, "4.7.8", f"login at {host} refused"), next_host=False)

        async def scenario():
            session = await open_session(sink.host, sink.port, PLAIN, login=login)
            await send(session, message("b@dest.test"), ["b@dest.test"], BODY, route="t")
            await session.quit()
            with pytest.raises(OutboundError) as info:
                await open_session(sink.host, sink.port, PLAIN, login=refused)
            return session, info.value

        session, error = asyncio.run(scenario())
        assert sink.wait_for(1)[0].auth_login == "gateway"
    assert session.mechanism == "plain"
    assert error.reply.enhanced == "4.7.8" and not error.next_host


@pytest.mark.parametrize(("fault", "enhanced"), [("hang_after_connect", "4.4.2"), ("garbage_greeting", None)])
def test_a_server_that_never_greets_properly_is_a_temporary_failure(fault, enhanced):
    with BadServer(fault) as bad:
        settings = ClientSettings("client.test", 0.5, TlsPolicy("none"))
        with pytest.raises(OutboundError) as info:
            asyncio.run(open_session(bad.host, bad.port, settings))
    assert info.value.reply.temporary and info.value.next_host
    if enhanced:
        assert info.value.reply.enhanced == enhanced


def test_a_5xx_greeting_is_only_not_this_host():
    """The greeting's own reply names the host; when no host takes the mail the outcome is temporary."""
    async def scenario():
        async def greet(reader, writer):
            writer.write(b"554 5.7.1 go away\r\n")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(greet, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            with pytest.raises(OutboundError) as info:
                await open_session("127.0.0.1", port, PLAIN)
        return info.value.reply, port

    reply, port = asyncio.run(scenario())
    assert (reply.code, reply.enhanced) == (554, "5.7.1") and "go away" in reply.text
    assert f"127.0.0.1:{port}" in reply.text and "greeting" in reply.text
    only = none_usable([("mx1", reply)], "MX host")
    assert (only.code, only.enhanced) == (451, "4.4.0") and "go away" in only.text
    both = none_usable([("mx1", reply), ("mx2", Reply(421, "4.3.2", "busy"))], "MX host")
    assert both.code == 451 and "mx1: 554 5.7.1" in both.text and "mx2: 421 4.3.2 busy" in both.text


def test_a_connection_lost_at_the_final_dot_is_temporary_and_not_reused():
    with BadServer("close_before_reply") as bad:
        async def scenario():
            p = pool()
            session = await p.acquire(key(), functools.partial(open_session, bad.host, bad.port, PLAIN))
            results = await send(session, message("b@dest.test"), ["b@dest.test"], BODY, route="t")
            p.release(session, reusable=reusable(results))
            return p, results

        p, [result] = asyncio.run(scenario())
    assert result.outcome is Outcome.TEMPORARY and result.reply.enhanced == "4.4.2"
    assert (p.count, p.idle_count) == (0, 0)


# -- the pool ---------------------------------------------------------------------------------


def test_pool_reuses_a_session_after_rset_and_counts():
    with RecordingSink() as sink:
        async def scenario():
            p = pool()
            for i in range(3):
                session = await p.acquire(key(), opener(sink))
                await send(session, message(f"r{i}@dest.test"), [f"r{i}@dest.test"], BODY, route="t")
                p.release(session, reusable=True)
            counters = (p.opened, p.reused, p.count, p.idle_count)
            await p.close()
            return counters, (p.count, p.idle_count), session

        counters, after_close, session = asyncio.run(scenario())
        got = sink.wait_for(3)
    assert counters == (1, 2, 1, 1)
    assert after_close == (0, 0) and not session.client.is_connected  # QUIT at shutdown
    assert len({m.peer for m in got}) == 1


def test_pool_keys_never_share_and_max_messages_opens_a_new_session():
    with RecordingSink() as sink:
        async def scenario():
            p = pool(max_messages=2)
            seen = []
            for k in (key(identity=("alice",)), key(identity=("bob",)), key(identity=("alice",)),
                      key(identity=("alice",))):
                session = await p.acquire(k, opener(sink))
                seen.append(session)
                p.release(session, reusable=True)
            await p.close()
            return p, seen

        p, (alice, bob, alice_again, alice_new) = asyncio.run(scenario())
    assert alice is alice_again and bob is not alice and alice_new is not alice
    assert p.opened == 3


def test_pool_at_its_cap_waits_for_a_session_and_evicts_an_idle_one_of_another_key():
    with RecordingSink() as sink:
        async def scenario():
            p = pool(max_connections=1)
            first = await p.acquire(key("a"), opener(sink))
            waiting = asyncio.ensure_future(p.acquire(key("a"), opener(sink)))
            await asyncio.sleep(0)  # let it reach the wait
            assert not waiting.done() and p.count == 1
            p.release(first, reusable=True)
            second = await asyncio.wait_for(waiting, 5)
            assert second is first and p.reused == 1
            p.release(second, reusable=True)
            other = await p.acquire(key("b"), opener(sink))  # evicts the idle session of key a
            assert other is not first and (p.count, p.idle_count, p.opened) == (1, 0, 2)
            await until(lambda: not first.client.is_connected)
            p.release(other, reusable=False)
            assert p.count == 0
            await p.close()

        asyncio.run(scenario())


def test_pool_closes_idle_sessions_after_idle_timeout():
    with RecordingSink() as sink:
        async def scenario():
            p = pool(idle_timeout=0.2)
            session = await p.acquire(key(), opener(sink))
            p.release(session, reusable=True)
            assert p.idle_count == 1
            await until(lambda: p.count == 0 and not session.client.is_connected)
            await p.close()

        asyncio.run(scenario())


def test_pool_replaces_a_session_the_server_closed_and_reuse_can_be_off():
    with RecordingSink(server_kwargs={"timeout": 0.3}) as sink:
        async def scenario():
            p = pool()
            first = await p.acquire(key(), opener(sink))
            p.release(first, reusable=True)
            await until(lambda: not first.client.is_connected)  # the server timed the session out
            second = await p.acquire(key(), opener(sink))
            assert second is not first and (p.opened, p.reused) == (2, 0)
            p.release(second, reusable=True)
            await p.close()
            off = pool(reuse=False)
            third = await off.acquire(key(), opener(sink))
            off.release(third, reusable=True)
            assert (off.count, off.idle_count) == (0, 0)
            await off.close()

        asyncio.run(scenario())


def test_pool_gives_back_the_place_of_a_session_that_could_not_be_opened():
    dead = free_port("127.0.0.1")

    async def scenario():
        p = pool(max_connections=1)
        for _ in range(2):
            with pytest.raises(OutboundError):
                await p.acquire(key(), functools.partial(open_session, "127.0.0.1", dead, PLAIN))
        return p.count

    assert asyncio.run(scenario()) == 0
