"""PIPELINING (RFC 2920) in the outbound transaction, and kept sessions the server closed while idle.

The peers are real servers on loopback: RecordingSink (aiosmtpd; it offers PIPELINING unless told
not to) and, where a server must do what aiosmtpd cannot (answer only once the whole group is in,
put every reply in one segment, close or go mute on a kept session), a few lines of asyncio server.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable

import pytest

from mailpipe.core.message import Outcome
from mailpipe.plugins.outbound.pool import ConnectionPool
from mailpipe.plugins.outbound.session import open_session
from mailpipe.plugins.outbound.transaction import send, send_pooled
from tests.outbound.test_client import BODY, PLAIN, key, message, opener, pool
from tests.peers.sink import RecordingSink

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


async def serve(script: Script, body: Callable[[int], Awaitable[object]]) -> object:
    """Run ``body(port)`` against an asyncio server whose connections (numbered from 1) run ``script``."""
    count = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal count
        count += 1
        try:
            await script(reader, writer, count)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        return await body(server.sockets[0].getsockname()[1])


async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, pipelining: bool = True) -> None:
    writer.write(b"220 peer.test ESMTP\r\n")
    line = await reader.readline()
    assert line[:4].upper() == b"EHLO"
    offers = b"250-PIPELINING\r\n" if pipelining else b""
    writer.write(b"250-peer.test\r\n" + offers + b"250-SIZE 1000000\r\n250 8BITMIME\r\n")


async def take_message(reader: asyncio.StreamReader) -> bytes:
    data = b""
    while (line := await reader.readline()) not in (b".\r\n", b""):
        data += line
    return data


def test_the_group_goes_in_one_write_and_replies_in_one_segment_are_all_read():
    """The server answers nothing until DATA has arrived, then every reply at once: a client that waits
    for each reply would hang here; one that reads only the first reply of a segment would too."""
    seen: list[bytes] = []

    async def group_first(reader, writer, n):
        await greet(reader, writer)
        while True:
            lines = []
            while (line := await reader.readline()) and line.upper() != b"DATA\r\n":
                lines.append(line)
            if not line:
                return
            seen.append(b"".join(lines) + line)
            replies = [b"250 2.0.0 reset\r\n" if ln.upper().startswith(b"RSET") else
                       b"550 5.1.1 no such user\r\n" if b"<nobody@" in ln else b"250 2.1.0 ok\r\n" for ln in lines]
            writer.write(b"".join(replies) + b"354 go ahead\r\n")
            seen.append(await take_message(reader))
            writer.write(b"250 2.0.0 queued as X\r\n")

    async def body(port):
        p = pool()
        open_new = functools.partial(open_session, "127.0.0.1", port, PLAIN)
        first = await asyncio.wait_for(send_pooled(p, key(), open_new, message("a@dest.test", "nobody@dest.test"),
                                                   ["a@dest.test", "nobody@dest.test"], BODY, route="t"), 10)
        second = await asyncio.wait_for(send_pooled(p, key(), open_new, message("b@dest.test"), ["b@dest.test"],
                                                    b".dot first\r\n" + BODY, route="t"), 10)
        counts = (p.opened, p.reused)
        await p.close()
        return first[1], second[1], counts

    first, second, counts = asyncio.run(serve(group_first, body))
    assert [(r.recipient, r.outcome, r.reply.code) for r in first] == [
        ("a@dest.test", Outcome.DELIVERED, 250), ("nobody@dest.test", Outcome.PERMANENT, 550)]
    assert "no such user" in first[1].reply.text and "queued as X" in first[0].reply.text
    assert [(r.outcome, r.reply.code) for r in second] == [(Outcome.DELIVERED, 250)]
    assert counts == (1, 1)
    assert seen[0] == b"MAIL FROM:<a@origin.test> SIZE=%d\r\nRCPT TO:<a@dest.test>\r\nRCPT TO:<nobody@dest.test>\r\n" \
                      b"DATA\r\n" % len(BODY)
    assert seen[1] == BODY
    # The kept session's next transaction opens with RSET, in the same group; dots are stuffed.
    size = len(BODY) + 12
    assert seen[2] == b"RSET\r\nMAIL FROM:<a@origin.test> SIZE=%d\r\nRCPT TO:<b@dest.test>\r\nDATA\r\n" % size
    assert seen[3] == b"..dot first\r\n" + BODY


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelining", "step-by-step"])
@pytest.mark.parametrize("case", ["rcpt-one-refused", "all-refused", "mail-refused", "dot-refused", "accepted"])
def test_outcomes_are_the_same_with_and_without_pipelining(pipelining, case):
    with RecordingSink() as sink:
        sink.behaviour.pipelining = pipelining
        if case in ("rcpt-one-refused", "all-refused"):
            sink.behaviour.rcpt["x@dest.test"] = "550 5.1.1 x unknown"
        if case == "all-refused":
            sink.behaviour.rcpt["y@dest.test"] = "450 4.2.1 y busy"
        if case == "mail-refused":
            sink.behaviour.mail = "553 5.7.1 sender refused"
        if case == "dot-refused":
            sink.behaviour.data = "554 5.6.0 content refused"
        rcpts = ["x@dest.test", "y@dest.test"] if case != "accepted" else ["y@dest.test"]

        async def scenario():
            p = pool()
            results = []
            for _ in range(2):  # the second on the kept session (RSET first)
                _, got = await send_pooled(p, key(), opener(sink), message(*rcpts), rcpts, BODY, route="t")
                results.append([(r.recipient, r.outcome, r.reply.code, r.reply.enhanced) for r in got])
            counts = (p.opened, p.reused)
            await p.close()
            return results, counts

        results, counts = asyncio.run(scenario())
    x, y, perm, temp, ok = "x@dest.test", "y@dest.test", Outcome.PERMANENT, Outcome.TEMPORARY, Outcome.DELIVERED
    expected = {
        "rcpt-one-refused": [(x, perm, 550, "5.1.1"), (y, ok, 250, "2.0.0")],
        "all-refused": [(x, perm, 550, "5.1.1"), (y, temp, 450, "4.2.1")],
        "mail-refused": [(x, perm, 553, "5.7.1"), (y, perm, 553, "5.7.1")],
        "dot-refused": [(x, perm, 554, "5.6.0"), (y, perm, 554, "5.6.0")],
        "accepted": [(y, ok, 250, "2.0.0")],
    }[case]
    for got in results:
        assert got == expected
    assert counts == (1, 1)  # refusals leave the session usable: it is kept and reused
    delivered = 2 if case in ("rcpt-one-refused", "accepted") else 0
    assert len(sink.messages) == delivered
    verbs = sink.session_commands()
    assert len(verbs) == 1 and verbs[0].count("RSET") >= 1


def test_a_354_when_every_recipient_was_refused_gets_a_lone_dot():
    """RFC 2920 3.1: a server may say 354 to a pipelined DATA after refusing every RCPT; the client ends it."""
    after: list[bytes] = []

    async def lenient(reader, writer, n):
        await greet(reader, writer)
        group = [await reader.readline() for _ in range(3)]  # MAIL, RCPT, DATA
        assert group[2].upper() == b"DATA\r\n"
        writer.write(b"250 ok\r\n550 5.1.1 unknown\r\n354 go ahead anyway\r\n")
        after.append(await take_message(reader))
        writer.write(b"554 5.5.1 no valid recipients\r\n")
        after.append(await reader.readline())

    async def body(port):
        session = await open_session("127.0.0.1", port, PLAIN)
        results = await asyncio.wait_for(send(session, message("x@dest.test"), ["x@dest.test"], BODY, route="t"), 10)
        await session.quit()
        return results

    [result] = asyncio.run(serve(lenient, body))
    assert (result.outcome, result.reply.code) == (Outcome.PERMANENT, 550)
    assert after == [b"", b"QUIT\r\n"]  # no message, only the lone dot; the session stayed in step


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelining", "step-by-step"])
@pytest.mark.parametrize("fault", ["closed", "mute"])
def test_a_kept_session_the_server_dropped_is_replaced_and_the_mail_goes_at_once(pipelining, fault):
    """The first connection carries one message, then its server closes it at the next command without a word
    (or stops answering: a firewall that forgot the idle connection). The next message must go on a new
    connection in the same attempt, within the probe's time limit, not be deferred."""
    delivered: list[int] = []

    async def one_then_gone(reader, writer, n):
        await greet(reader, writer, pipelining=pipelining)
        while line := await reader.readline():
            verb = line[:4].upper()
            if n == 1 and delivered and verb in (b"RSET", b"MAIL"):
                if fault == "closed":
                    return
                await reader.read()  # mute until the client gives up
                return
            if verb == b"DATA":
                writer.write(b"354 go ahead\r\n")
                await take_message(reader)
                delivered.append(n)
                writer.write(b"250 2.0.0 ok\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                return
            else:
                writer.write(b"250 ok\r\n")

    async def body(port):
        p = ConnectionPool(max_connections=4, max_messages=100, idle_timeout=30.0, probe_timeout=0.5)
        open_new = functools.partial(open_session, "127.0.0.1", port, PLAIN)
        outcomes = []
        started = 0.0
        for i in range(2):
            started = time.monotonic()
            _, results = await asyncio.wait_for(
                send_pooled(p, key(), open_new, message(f"r{i}@dest.test"), [f"r{i}@dest.test"], BODY, route="t"), 10)
            outcomes.append(results[0].outcome)
        took = time.monotonic() - started
        counts = (p.opened, p.count)
        await p.close()
        return outcomes, counts, took

    outcomes, counts, took = asyncio.run(serve(one_then_gone, body))
    assert outcomes == [Outcome.DELIVERED, Outcome.DELIVERED]
    assert delivered == [1, 2]
    assert counts == (2, 1)
    assert took < 5  # the probe's 0.5 s, not the client's 5 s command timeout, and no deferral


@pytest.mark.parametrize("cut_after", ["group", "message"])
def test_a_connection_cut_inside_a_pipelined_transaction_is_temporary_and_not_reused(cut_after):
    """The server closes after reading the group (no reply at all to a new session's MAIL), or after the
    message (no reply to the final dot): every recipient is deferred (4.4.2), none delivered, the session gone."""
    async def cutting(reader, writer, n):
        await greet(reader, writer)
        group = [await reader.readline() for _ in range(3)]  # MAIL, RCPT, DATA
        assert group[2].upper() == b"DATA\r\n"
        if cut_after == "group":
            return
        writer.write(b"250 ok\r\n250 ok\r\n354 go ahead\r\n")
        await take_message(reader)

    async def body(port):
        p = pool()
        open_new = functools.partial(open_session, "127.0.0.1", port, PLAIN)
        _, results = await asyncio.wait_for(
            send_pooled(p, key(), open_new, message("a@dest.test"), ["a@dest.test"], BODY, route="t"), 10)
        counts = (p.count, p.idle_count)
        await p.close()
        return results, counts

    [result], counts = asyncio.run(serve(cutting, body))
    assert (result.outcome, result.reply.code, result.reply.enhanced) == (Outcome.TEMPORARY, 451, "4.4.2")
    assert ("MAIL FROM" if cut_after == "group" else "DATA") in result.reply.text
    assert counts == (0, 0)
