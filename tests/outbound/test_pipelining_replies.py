"""The pipelined reply reader against servers that answer in any chunking, and servers that answer garbage.

A real asyncio server on loopback greets, then answers the client's pipelined commands with bytes
hypothesis chose, cut where hypothesis chose. Valid replies must come out exactly as aiosmtplib
would read them one by one; anything else must end in one of the client's own errors, within the
time limit, and never in a hang or a stray exception (a remote MX host is not to be trusted).
"""

from __future__ import annotations

import asyncio

import aiosmtplib
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailpipe.plugins.outbound.pipelining import MAX_UNREAD, Pipeline, _Reader
from mailpipe.plugins.outbound.session import ClientSettings, open_session
from mailpipe.plugins.outbound.tls import TlsPolicy
from tests.outbound.test_pipelining import greet, serve

CLIENT = ClientSettings("client.test", 10.0, TlsPolicy("none"))
TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40).map(str.strip)
REPLY = st.tuples(st.integers(200, 599), st.lists(TEXT, min_size=1, max_size=3))


def wire(code: int, lines: list[str]) -> bytes:
    out = [f"{code}-{text}" for text in lines[:-1]] + [f"{code} {lines[-1]}"]
    return "".join(line + "\r\n" for line in out).encode()


async def exchange(answer: list[bytes], commands: int, wait: float = 10.0) -> list[object]:
    """Connect, send ``commands`` NOOPs in one write, read that many replies (each within ``wait``); the
    server sends ``answer`` chunk by chunk once it has the group. Returns each reply, or the exception
    that ended the reading."""
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _n: int) -> None:
        await greet(reader, writer)
        for _ in range(commands):
            await reader.readline()
        for chunk in answer:
            writer.write(chunk)
            await writer.drain()
            await asyncio.sleep(0)
        await reader.read()  # until the client is done

    async def client(port: int) -> list[object]:
        session = await open_session("127.0.0.1", port, CLIENT)
        got: list[object] = []
        try:
            with Pipeline(session.client) as pipe:
                pipe.write(b"NOOP\r\n" * commands)
                for _ in range(commands):
                    got.append(await pipe.reply(timeout=wait))
        except (aiosmtplib.SMTPResponseException, aiosmtplib.SMTPServerDisconnected,
                aiosmtplib.SMTPTimeoutError) as exc:
            got.append(exc)
        finally:
            session.client.close()
        return got

    return await serve(script, client)  # type: ignore[return-value]


def cut(data: bytes, points: list[int]) -> list[bytes]:
    edges = sorted({p % (len(data) + 1) for p in points} | {0, len(data)})
    return [data[a:b] for a, b in zip(edges, edges[1:], strict=False) if b > a]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(replies=st.lists(REPLY, min_size=1, max_size=6), points=st.lists(st.integers(0, 2000), max_size=8))
def test_valid_replies_come_out_whole_and_in_order_however_they_are_cut(replies, points):
    data = b"".join(wire(code, lines) for code, lines in replies)
    got = asyncio.run(exchange(cut(data, points), len(replies)))
    assert [(r.code, r.message) for r in got] == [(code, "\n".join(lines)) for code, lines in replies]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(garbage=st.binary(max_size=300), points=st.lists(st.integers(0, 400), max_size=5),
       commands=st.integers(1, 4))
def test_garbage_ends_in_the_clients_own_errors_never_a_hang(garbage, points, commands):
    got = asyncio.run(asyncio.wait_for(exchange(cut(garbage, points), commands, wait=0.2), 30))
    assert got and len(got) <= commands
    *replies, last = got
    assert all(isinstance(r, aiosmtplib.SMTPResponse) for r in replies)
    assert isinstance(last, aiosmtplib.SMTPResponse | aiosmtplib.SMTPException)


def test_a_server_flooding_replies_is_cut_off_at_a_bound():
    """2,000 replies in one segment: the reader keeps at most MAX_UNREAD (+1) and marks the session out of step."""
    reader = _Reader(inner=None)
    reader.data_received(b"250 ok\r\n" * 2000)
    assert len(reader.replies) == MAX_UNREAD + 1
    assert isinstance(reader.error, aiosmtplib.SMTPResponseException) and "Too many" in reader.error.message
    reader.data_received(b"250 more\r\n" * 10)  # nothing more is read once out of step
    assert len(reader.replies) == MAX_UNREAD + 1
