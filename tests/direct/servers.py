"""Deliberately misbehaving real socket servers, for faults no well-behaved SMTP server shows.

* ``GreetingServer``: accepts, greets with a fixed line (e.g. ``421 4.3.2 busy``), closes.
* ``SilentServer``: accepts and never says anything (a greeting time-out).
* ``StallingListener``: a listening socket whose accept queue is full, so a new
  connect hangs in SYN-SENT: what an unreachable (black-holed) address looks like,
  kept on loopback.
"""

from __future__ import annotations

import socket
import threading


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


class GreetingServer:
    """A TCP server on ``host:port`` that answers every connection with ``greeting`` and hangs up.

    ``greeting=None``: say nothing and keep the connection open until stopped.
    ``connections`` counts the connections accepted.
    """

    def __init__(self, host: str, port: int, greeting: str | None) -> None:
        self.host, self.port, self.greeting = host, port, greeting
        self.connections = 0
        self._sock = socket.socket(_family(host), socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self._sock.listen(16)
        self._held: list[socket.socket] = []
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            if self._stop:  # the wake-up connection of __exit__
                conn.close()
                return
            self.connections += 1
            if self.greeting is None:
                self._held.append(conn)
                continue
            try:
                conn.sendall(self.greeting.encode() + b"\r\n")
                conn.settimeout(2)
                conn.recv(1024)  # the client's QUIT, if it sends one
            except OSError:
                pass
            conn.close()

    def __enter__(self) -> GreetingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop = True
        try:
            # wake accept()
            with socket.create_connection((self.host, self.port), timeout=1):
                pass
        except OSError:
            pass
        self._sock.close()
        self._thread.join(timeout=5)
        for c in self._held:
            c.close()


class SilentServer(GreetingServer):
    """Accepts connections and never greets."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(host, port, None)


class StallingListener:
    """``host:port`` where a TCP connect neither succeeds nor fails: it hangs until the client gives up."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._sock = socket.socket(_family(host), socket.SOCK_STREAM)
        self._sock.bind((host, port))
        self._sock.listen(0)
        self._fillers: list[socket.socket] = []

    def __enter__(self) -> StallingListener:
        # Fill the accept queue (never accepted); after that new SYNs are dropped.
        for _ in range(8):
            filler = socket.socket(_family(self.host), socket.SOCK_STREAM)
            filler.settimeout(0.3)
            try:
                filler.connect((self.host, self.port))
            except OSError:
                filler.close()
                break
            self._fillers.append(filler)
        return self

    def __exit__(self, *exc: object) -> None:
        for s in self._fillers:
            s.close()
        self._sock.close()
