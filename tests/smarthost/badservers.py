"""Deliberately misbehaving SMTP servers on real sockets, for faults no well-behaved server shows.

``ScriptedServer`` accepts connections on a loopback port in a thread and, per
connection, sends a fixed greeting (e.g. ``421 4.3.2 busy``) and closes, or
greets and then stays silent (a hung server). It counts connections.
"""

from __future__ import annotations

import socket
import threading


class ScriptedServer:
    """A TCP server that greets with ``greeting`` then closes (``hang=False``) or never answers again."""

    def __init__(self, host: str, greeting: str | None, *, hang: bool = False) -> None:
        self.greeting = greeting
        self.hang = hang
        self.connections = 0
        self.sock = socket.create_server((host, 0))
        self.host, self.port = self.sock.getsockname()[:2]
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() of the server thread
        except OSError:
            pass
        self.sock.close()
        for conn in self._held:
            conn.close()
        self._thread.join(5)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            if self.greeting:
                conn.sendall(self.greeting.encode() + b"\r\n")
            if self.hang:
                self._held.append(conn)
            else:
                conn.close()


def closed_port(host: str) -> int:
    """A port on ``host`` where nothing listens (connection refused)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]
