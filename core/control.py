"""A tiny control channel: ``pipeline queue retry`` wakes a running ``pipeline serve``.

A Unix datagram socket in the state folder. The server binds it; the CLI sends
one word (``run``) and does not wait. When no server runs, nothing happens: the
change the CLI made in the queue is picked up at the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("mailpipe.control")


def socket_path(state_dir: Path) -> Path:
    return state_dir / "control.sock"


class _Protocol(asyncio.DatagramProtocol):
    """Hands every datagram to ``on_datagram``."""

    def __init__(self, on_datagram: Callable[[bytes], None]) -> None:
        self.on_datagram = on_datagram

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.on_datagram(data)


async def listen(state_dir: Path, on_run: Callable[[], None]) -> asyncio.DatagramTransport | None:
    """Bind the control socket for one server: ``run`` calls ``on_run``; None (with a warning) when unbound."""

    def on_datagram(data: bytes) -> None:
        if data.strip() == b"run":
            on_run()

    return await bind(state_dir, on_datagram, "this server")


async def bind(state_dir: Path, on_datagram: Callable[[bytes], None],
               who: str) -> asyncio.DatagramTransport | None:
    """Bind the control socket, each datagram to ``on_datagram``; None (with a warning naming ``who``, what
    `pipeline queue retry` will not wake) when it cannot be bound. Called by ``listen`` and the supervisor."""
    path = socket_path(state_dir)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind(str(path))
        sock.setblocking(False)
        transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: _Protocol(on_datagram), sock=sock
        )
    except (OSError, TypeError, ValueError) as exc:
        sock.close()
        log.warning("control socket %s unavailable (%s): `pipeline queue retry` will not wake %s", path, exc, who)
        return None
    return transport  # type: ignore[return-value]


def poke(state_dir: Path) -> bool:
    """Ask a running server to start a delivery run now; False when none listens."""
    path = socket_path(state_dir)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(b"run", str(path))
        return True
    except OSError:
        return False
