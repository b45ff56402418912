"""A TCP proxy in front of the test PostgreSQL that misbehaves on purpose: a network cut, a cut during COMMIT.

``TcpProxy(target_host, target_port)`` forwards every connection made to ``proxy.port``.
``block()`` cuts every connection and refuses (closes at once) new ones, as a network cut or
a dead server would; ``unblock()`` ends that. ``cut_next_commit(marker)`` cuts the first
connection that sends a COMMIT in a transaction whose statements contained ``marker``,
*before* the COMMIT reaches the server: the transaction is rolled back by the server, and
the client sees its connection drop while waiting for COMMIT's answer.
"""

from __future__ import annotations

import contextlib
import socket
import threading

from tests.peers.tcp import CHUNK, TcpRelay, cut


class TcpProxy(TcpRelay):
    """Forwards ``127.0.0.1:port`` to ``target``; every socket is closed by ``close``."""

    def __init__(self, target_host: str, target_port: int, host: str = "127.0.0.1") -> None:
        super().__init__((target_host, target_port), host, name="tcp-proxy")
        self.blocked = False
        self.cut = threading.Event()  # set when a COMMIT was cut
        self._marker: bytes | None = None

    def block(self) -> None:
        """Cut every connection and refuse new ones until ``unblock``."""
        self.blocked = True
        self.cut_all()

    def unblock(self) -> None:
        """Forward new connections again."""
        self.blocked = False

    def cut_next_commit(self, marker: bytes) -> None:
        """Cut the connection that next sends COMMIT after a statement containing ``marker``."""
        self.cut.clear()
        self._marker = marker

    # -- the relay's hooks --------------------------------------------------------------------------

    def admit(self) -> bool:
        """No new connection while blocked."""
        return not self.blocked

    def forward(self, client: socket.socket, server: socket.socket) -> None:
        """The client's bytes, up to the COMMIT that ``cut_next_commit`` waits for (never forwarded)."""
        seen_marker = False
        with contextlib.suppress(OSError):
            while data := client.recv(CHUNK):
                marker = self._marker
                if marker is not None:
                    seen_marker = seen_marker or marker in data
                    if seen_marker and b"COMMIT" in data and self._marker is not None:
                        self._marker = None
                        self.cut.set()
                        break
                server.sendall(data)
        self.finished(client, server)

    def finished(self, src: socket.socket, dst: socket.socket) -> None:
        """Either side ending ends the connection: both are cut."""
        for sock in (src, dst):
            cut(sock)
        self.untrack(src, dst)
