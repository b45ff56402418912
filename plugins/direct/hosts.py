"""Reaching one MX host: its addresses in a sensible order, and a happy-eyeballs connect.

The addresses of a host are interleaved by family (RFC 8305: IPv6 first by
default, then IPv4, then IPv6 ...). ``connect_first`` starts with the first
address and starts the next one as soon as the previous fails or after
``delay`` seconds without an answer, whichever comes first; the first
connection made wins and the others are abandoned. So an unreachable AAAA
(packets dropped, no refusal) costs ``delay``, not the whole connect timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

from mailpipe.core.errors import Reply


def interleave(addresses: list[str], *, prefer_ipv6: bool = True) -> list[str]:
    """Alternate the two families, starting with the preferred one; order within a family kept."""
    v6 = [a for a in addresses if ":" in a]
    v4 = [a for a in addresses if ":" not in a]
    first, second = (v6, v4) if prefer_ipv6 else (v4, v6)
    out: list[str] = []
    for i in range(max(len(first), len(second))):
        out += first[i:i + 1] + second[i:i + 1]
    return out


def show(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


class ConnectError(Exception):
    """No address of a host could be connected to; ``reply`` is the temporary outcome."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(str(reply))
        self.reply = reply


async def _connect(address: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, (address, port))
    except BaseException:
        sock.close()
        raise
    return sock


async def connect_first(
    name: str, addresses: list[str], port: int, *, timeout: float, delay: float = 0.3,
) -> tuple[socket.socket, str]:
    """A connected TCP socket to one of ``addresses`` and the address it reached.

    Raises ``ConnectError`` (451 4.4.1, or 4.4.2 when it was a time-out) when
    none could be reached within ``timeout``.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    waiting = list(addresses)
    running: dict[asyncio.Task[socket.socket], str] = {}
    errors: list[str] = []
    try:
        while waiting or running:
            if waiting:
                addr = waiting.pop(0)
                running[asyncio.create_task(_connect(addr, port))] = addr
            left = deadline - loop.time()
            if left <= 0:
                break
            done, _ = await asyncio.wait(
                running, timeout=min(delay, left) if waiting else left, return_when=asyncio.FIRST_COMPLETED,
            )
            for task in done:
                addr = running.pop(task)
                exc = task.exception()
                if exc is None:
                    return task.result(), addr
                errors.append(f"{show(addr, port)}: {_reason(exc)}")
    finally:
        for task in running:
            task.cancel()
        for task in running:
            with contextlib.suppress(BaseException):
                sock = await task
                sock.close()
    timed_out = [show(a, port) for a in running.values()] + [show(a, port) for a in waiting]
    if timed_out or not errors:
        errors += [f"{t}: timed out after {timeout:g}s" for t in timed_out]
        return_reply = Reply(451, "4.4.2", f"cannot connect to {name}: {'; '.join(errors)}")
    else:
        return_reply = Reply(451, "4.4.1", f"cannot connect to {name}: {'; '.join(errors)}")
    raise ConnectError(return_reply)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return " ".join(str(exc).split())[:200] or type(exc).__name__
