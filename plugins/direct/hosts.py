"""Reaching one MX host: its addresses in RFC 8305 order, raced with staggered starts ("happy eyeballs").

The addresses of a host are interleaved by family (IPv6 first by default, then
IPv4, then IPv6 ...). ``connect_first`` starts with the first address and
starts the next one as soon as the previous fails or after ``delay`` seconds
without an answer; the first connection made wins and the others are closed.
So an unreachable AAAA (packets dropped, no refusal) costs ``delay``, not the
whole connect timeout. The race is asyncio's own ``staggered_race`` (what
``loop.create_connection(happy_eyeballs_delay=...)`` runs); that call itself
cannot be used, as it resolves names with the system resolver and the
addresses here come from the MX lookup through the configured DNS servers.
"""

from __future__ import annotations

import asyncio
import socket
from asyncio.staggered import staggered_race
from collections.abc import Awaitable, Callable

from mailpipe.plugins.outbound.replies import OutboundError, short, unreachable


def interleave(addresses: list[str], *, prefer_ipv6: bool = True) -> list[str]:
    """Alternate the two families, starting with the preferred one; order within a family kept."""
    v6 = [a for a in addresses if ":" in a]
    v4 = [a for a in addresses if ":" not in a]
    first, second = (v6, v4) if prefer_ipv6 else (v4, v6)
    out: list[str] = []
    for i in range(max(len(first), len(second))):
        out += first[i:i + 1] + second[i:i + 1]
    return out


async def connect_first(
    name: str, addresses: list[str], port: int, *, timeout: float, delay: float = 0.3,
) -> tuple[socket.socket, str]:
    """A connected TCP socket to one of ``addresses`` (in the order given) and the address it reached.

    Called by ``direct`` through ``open_session``. Raises ``OutboundError``
    (451 4.4.1, or 4.4.2 when one timed out) naming what each address did when
    none could be reached within ``timeout``.
    """
    loop = asyncio.get_running_loop()
    errors: dict[str, str] = {}
    made: list[socket.socket] = []

    def attempt(address: str) -> Callable[[], Awaitable[socket.socket]]:
        async def connect() -> socket.socket:
            sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                await loop.sock_connect(sock, (address, port))
            except BaseException as exc:
                sock.close()
                if isinstance(exc, Exception):
                    errors[address] = getattr(exc, "strerror", None) or short(exc)
                raise
            made.append(sock)
            return sock
        return connect

    try:
        async with asyncio.timeout(timeout):
            sock, index, _ = await staggered_race([attempt(a) for a in addresses], delay)
    except TimeoutError:
        for late in made:  # a winner the time-out cut off
            late.close()
        index = None
    if index is not None:
        return sock, addresses[index]
    tried = [f"{f'[{a}]' if ':' in a else a}:{port}: {errors.get(a, f'timed out after {timeout:g}s')}"
             for a in addresses]
    raise OutboundError(unreachable(name, tried, timed_out=len(errors) < len(addresses)), host=name)
