"""The outbound DATA step (plugins/outbound/data.py): the same octets on the wire as aiosmtplib's own ``data``.

Canonical bytes (what the queue holds) are only dot-stuffed; anything else goes through
aiosmtplib's normalisation. Either way the server receives exactly what aiosmtplib's
``normalize_message_line_endings`` + ``(?m)^\\.`` dot-stuffing would have sent. The server is a
real one on loopback (tests/peers/badserver.py keeps each message as it came over the wire).
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time

import pytest
from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings

from mailpipe.core.message import Message, Outcome, Recipient
from mailpipe.plugins.outbound.data import dot_stuffed
from mailpipe.plugins.outbound.session import ClientSettings, open_session
from mailpipe.plugins.outbound.tls import TlsPolicy
from mailpipe.plugins.outbound.transaction import send
from tests.peers.badserver import BadServer

PLAIN = ClientSettings("client.test", 5.0, TlsPolicy("none"))


def aiosmtplib_wire(data: bytes) -> bytes:
    """What aiosmtplib's ``SMTP.data`` writes after its 354: normalised, dot-stuffed, final dot."""
    return PERIOD_REGEX.sub(b"..", normalize_message_line_endings(data)) + b".\r\n"


def test_dot_stuffing_matches_aiosmtplib_for_every_short_mixture():
    """Every string of up to 5 pieces from an alphabet full of dots and line ends: same bytes, or the slow path."""
    alphabet = [b"a", b".", b"\r\n", b"\r", b"\n", b".\r\n", b"\r\n.", b".."]
    fast = 0
    for n in range(6):
        for pieces in itertools.product(alphabet, repeat=n):
            data = b"".join(pieces)
            got = dot_stuffed(data)
            if got is not None:
                fast += 1
                assert got == aiosmtplib_wire(data), data
            else:  # not canonical: aiosmtplib's own path must be the one that changes something
                assert not data.endswith(b"\r\n") or normalize_message_line_endings(data) != data, data
    assert fast > 1000


def test_dot_stuffing_of_a_large_canonical_message():
    rng = random.Random(13)
    lines = [rng.choice([b"", b".", b"..", b".x", b"text", b"x." * 40]) for _ in range(5000)]
    data = b"\r\n".join(lines) + b"\r\n"
    assert dot_stuffed(data) == aiosmtplib_wire(data)
    assert dot_stuffed(data[:-2]) is None  # not ended by CRLF: normalised by aiosmtplib instead


@pytest.mark.parametrize("body", [
    b"Subject: dots\r\n\r\n.leading\r\n..two\r\nmiddle . dot\r\n.\r\n",  # canonical: the fast path
    b"Subject: bare\n\n.leading\nlast line without end",  # bare LF: aiosmtplib's path
    b".first line is a dot line\r\n",
])
def test_the_server_receives_what_aiosmtplib_would_send(body):
    """On the wire: the message as aiosmtplib sends it; the server's 250 makes it delivered."""
    with BadServer("ok") as server:
        async def scenario():
            session = await open_session(server.host, server.port, PLAIN)
            message = Message("m1", "a@origin.test", [Recipient("b@dest.test")], time.time(), size=len(body))
            results = await send(session, message, ["b@dest.test"], body, route="t")
            await session.quit()
            return results

        [result] = asyncio.run(scenario())
        wire = aiosmtplib_wire(body)
        assert server.bodies == [wire[: -len(b".\r\n")]]  # the server keeps the lines before the final dot
    assert result.outcome is Outcome.DELIVERED and result.reply.code == 250


@pytest.mark.parametrize("fault", ["close_before_reply", "drop_mid_data"])
def test_a_connection_lost_in_data_is_a_temporary_failure(fault):
    body = b"Subject: lost\r\n\r\n" + b"line of text\r\n" * 100
    with BadServer(fault) as server:
        async def scenario():
            session = await open_session(server.host, server.port, PLAIN)
            message = Message("m1", "a@origin.test", [Recipient("b@dest.test")], time.time(), size=len(body))
            results = await send(session, message, ["b@dest.test"], body, route="t")
            connected = session.client.is_connected
            await session.quit()
            return results, connected

        [result], connected = asyncio.run(scenario())
    assert result.outcome is Outcome.TEMPORARY and not connected
