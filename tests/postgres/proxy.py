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

from tests.peers.net import free_port


class TcpProxy:
    """Forwards ``127.0.0.1:port`` to ``target``; every socket is closed by ``close``."""

    def __init__(self, target_host: str, target_port: int, host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.host = host
        self.port = free_port(host)
        self.blocked = False
        self.cut = threading.Event()  # set when a COMMIT was cut
        self._marker: bytes | None = None
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._server = socket.create_server((host, self.port))
        self._thread = threading.Thread(target=self._accept, name="tcp-proxy", daemon=True)
        self._closed = False

    def __enter__(self) -> TcpProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop accepting and cut every connection."""
        self._closed = True
        with contextlib.suppress(OSError):
            self._server.close()
        self._cut_all()

    def block(self) -> None:
        """Cut every connection and refuse new ones until ``unblock``."""
        self.blocked = True
        self._cut_all()

    def unblock(self) -> None:
        """Forward new connections again."""
        self.blocked = False

    def cut_next_commit(self, marker: bytes) -> None:
        """Cut the connection that next sends COMMIT after a statement containing ``marker``."""
        self.cut.clear()
        self._marker = marker

    # -- internals ----------------------------------------------------------------------------------

    def _cut_all(self) -> None:
        with self._lock:
            conns, self._conns = list(self._conns), set()
        for sock in conns:
            _hard_close(sock)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if self.blocked:
                _hard_close(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _hard_close(client)
                continue
            with self._lock:
                self._conns.update((client, upstream))
            seen = {"marker": False}
            threading.Thread(target=self._pump, args=(client, upstream, seen, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, seen, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, seen: dict[str, bool], outbound: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if outbound and self._marker is not None:
                    if self._marker in data:
                        seen["marker"] = True
                    if seen["marker"] and b"COMMIT" in data and self._marker is not None:
                        self._marker = None
                        self.cut.set()
                        break  # the COMMIT is never forwarded
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                _hard_close(sock)
            with self._lock:
                self._conns.discard(src)
                self._conns.discard(dst)


def _hard_close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
