"""Plain TCP for the peers that misbehave on purpose: a threaded listener, a relay, reading up to an end marker.

:class:`TcpListener` owns the listening socket, the accept thread and the shutdown that
cuts every connection still open; a subclass says what to do with each connection
(``accepted``). :class:`TcpRelay` is a listener that passes each connection on to a real
server, a direction at a time, for peers that change or cut what goes through
(``tests/peers/stripper.py``, ``tests/postgres/proxy.py``). :func:`read_until` reads a
reply up to its end marker (a line end, clamd's NUL).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Self

#: How much one ``recv`` of a relay or a reader takes at the most.
CHUNK = 65536


def family(host: str) -> int:
    """The address family of a numeric ``host`` (IPv6 when it has a colon)."""
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def cut(sock: socket.socket) -> None:
    """Shut ``sock`` down both ways (waking a thread blocked on it) and close it; errors are ignored."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


def read_until(sock: socket.socket, end: bytes) -> bytes:
    """What ``sock`` sends until it ends with ``end`` or the peer closes (``sock``'s timeout bounds each read)."""
    data = b""
    while not data.endswith(end):
        chunk = sock.recv(CHUNK)
        if not chunk:
            break
        data += chunk
    return data


class TcpListener:
    """Listens on ``host:port`` (0: a free port) and hands each connection to ``accepted``; a context manager.

    ``accepted`` runs in the one accept thread: a subclass serves the connection there or
    starts a thread of its own for it. ``connections`` counts the connections accepted.
    Sockets given to ``track`` are cut by ``close`` (and by ``cut_all``), so a session
    blocked in a read ends with the listener; ``stopping`` is set once ``close`` began.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, name: str = "tcp-listener",
                 backlog: int = 16) -> None:
        self._sock = socket.socket(family(host), socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self._sock.listen(backlog)
        self.host, self.port = host, int(self._sock.getsockname()[1])
        self.connections = 0
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop accepting and cut every tracked connection; waits briefly for the accept thread."""
        self.stopping.set()
        cut(self._sock)  # the shutdown wakes the thread blocked in accept()
        self.cut_all()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(5)

    def track(self, *socks: socket.socket) -> None:
        """Cut ``socks`` when the listener closes (or on ``cut_all``)."""
        with self._lock:
            self._open.update(socks)

    def untrack(self, *socks: socket.socket) -> None:
        """Forget ``socks`` (they were closed otherwise)."""
        with self._lock:
            self._open.difference_update(socks)

    def cut_all(self) -> None:
        """Cut every tracked connection now; the listener goes on accepting."""
        with self._lock:
            socks, self._open = list(self._open), set()
        for sock in socks:
            cut(sock)

    def accepted(self, conn: socket.socket) -> None:
        """Serve one new connection (called in the accept thread); a subclass implements it."""
        raise NotImplementedError

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            if self.stopping.is_set():
                cut(conn)
                return
            self.connections += 1
            self.accepted(conn)


class TcpRelay(TcpListener):
    """Passes each connection on to ``upstream``: what the client sends through ``forward``, the answers through
    ``backward``, each direction in a thread of its own.

    A connection that ``admit`` refuses, or whose upstream cannot be reached, is cut at once.
    By default both directions pass bytes on unchanged and, when one side stops sending,
    close the other's sending side too (``finished``); subclasses change what goes through.
    """

    def __init__(self, upstream: tuple[str, int], host: str = "127.0.0.1", port: int = 0, *,
                 name: str = "tcp-relay") -> None:
        super().__init__(host, port, name=name)
        self.upstream = upstream

    def accepted(self, conn: socket.socket) -> None:
        """Connect to the upstream and start both directions."""
        if not self.admit():
            cut(conn)
            return
        try:
            server = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            cut(conn)
            return
        server.settimeout(None)
        self.track(conn, server)
        threading.Thread(target=self.forward, args=(conn, server), daemon=True).start()
        threading.Thread(target=self.backward, args=(server, conn), daemon=True).start()

    def admit(self) -> bool:
        """Whether a new connection is relayed (True); a subclass may refuse some."""
        return True

    def forward(self, client: socket.socket, server: socket.socket) -> None:
        """Carry what the client sends to the server."""
        self.pass_on(client, server)

    def backward(self, server: socket.socket, client: socket.socket) -> None:
        """Carry what the server answers to the client."""
        self.pass_on(server, client)

    def pass_on(self, src: socket.socket, dst: socket.socket) -> None:
        """Copy ``src`` to ``dst`` unchanged until ``src`` ends (or either fails), then call ``finished``."""
        with contextlib.suppress(OSError):
            while data := src.recv(CHUNK):
                dst.sendall(data)
        self.finished(src, dst)

    def finished(self, src: socket.socket, dst: socket.socket) -> None:
        """One direction ended: by default ``dst`` is told there is nothing more (its sending side closed)."""
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)
