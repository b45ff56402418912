"""A POP3 server that misbehaves on purpose (drops the connection in the middle of a RETR), and one that
speaks SASL XOAUTH2, for what the real Dovecot peer does not do on demand.

It keeps a mailbox in memory (UIDLs fixed per message), applies DELE only at a successful
QUIT (as RFC 1939 says), and records every command, so tests can prove what the client did.
"""

from __future__ import annotations

import base64
import contextlib
import socket
from dataclasses import dataclass, field

from tests.peers.tcp import TcpListener


@dataclass(eq=False)
class FakePop3(TcpListener):
    """A threaded POP3 server on ``host`` serving one session at a time; use as a context manager.

    ``messages``: uidl -> bytes (CRLF). ``drop_retr``: the message number whose RETR is cut
    half-way, in each of the first ``drop_sessions`` sessions; ``listed_size``: what LIST says of every
    message's size, whatever it is. ``token``: when set, only
    ``AUTH XOAUTH2`` with this bearer token logs ``user`` in; otherwise USER/PASS with ``password``.
    """

    messages: dict[str, bytes]
    user: str = "office"
    password: str = "office-secret"
    token: str | None = None
    drop_retr: int | None = None
    drop_sessions: int = 1
    listed_size: int | None = None  # LIST says this size for every message (a server whose sizes lie)
    host: str = "127.0.0.1"
    commands: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        TcpListener.__init__(self, self.host, name="fake-pop3")

    def accepted(self, conn: socket.socket) -> None:
        """One session at a time, in the accept thread; a session still open at ``close`` is cut."""
        self.track(conn)
        with conn:
            with contextlib.suppress(OSError):
                self._session(conn, self.connections)
        self.untrack(conn)

    def _session(self, conn: socket.socket, number: int) -> None:
        conn.settimeout(30)
        f = conn.makefile("rb")
        send = conn.sendall
        send(b"+OK fake POP3 ready <1.2@fake.test>\r\n")
        with self._lock:
            box = list(self.messages.items())
        marked: set[int] = set()
        logged_in = False
        while True:
            raw = f.readline()
            if not raw:
                return
            line = raw.decode().rstrip("\r\n")
            verb, _, arg = line.partition(" ")
            verb = verb.upper()
            self.commands.append(line if verb != "PASS" else "PASS ***")
            if verb == "USER":
                send(b"+OK\r\n")
            elif verb == "PASS":
                logged_in = self.token is None and arg == self.password
                send(b"+OK logged in\r\n" if logged_in else b"-ERR [AUTH] Authentication failed.\r\n")
            elif verb == "AUTH" and arg.upper().startswith("XOAUTH2 "):
                decoded = base64.b64decode(arg.split(" ", 1)[1]).decode()
                wanted = f"user={self.user}\x01auth=Bearer {self.token}\x01\x01"
                logged_in = self.token is not None and decoded == wanted
                if logged_in:
                    send(b"+OK logged in\r\n")
                else:
                    send(b"+ " + base64.b64encode(b'{"status":"401"}') + b"\r\n")
                    f.readline()
                    send(b"-ERR [AUTH] Invalid token\r\n")
            elif not logged_in and verb not in ("QUIT", "CAPA"):
                send(b"-ERR log in first\r\n")
            elif verb in ("LIST", "UIDL"):
                send(b"+OK\r\n")
                for n, (uidl, data) in enumerate(box, 1):
                    if n not in marked:
                        size = self.listed_size if self.listed_size is not None else len(data)
                        send(f"{n} {size if verb == 'LIST' else uidl}\r\n".encode())
                send(b".\r\n")
            elif verb == "RETR":
                n = int(arg)
                data = box[n - 1][1]
                stuffed = b"\r\n".join(b"." + ln if ln.startswith(b".") else ln for ln in data.split(b"\r\n"))
                if n == self.drop_retr and number <= self.drop_sessions:
                    send(b"+OK\r\n" + stuffed[: len(stuffed) // 2])
                    conn.shutdown(socket.SHUT_RDWR)
                    return
                send(b"+OK\r\n" + stuffed + (b"" if stuffed.endswith(b"\r\n") else b"\r\n") + b".\r\n")
            elif verb == "DELE":
                marked.add(int(arg))
                send(b"+OK marked\r\n")
            elif verb == "QUIT":
                with self._lock:
                    for n in sorted(marked):
                        uidl = box[n - 1][0]
                        self.messages.pop(uidl, None)
                        self.deleted.append(uidl)
                send(b"+OK bye\r\n")
                return
            else:
                send(b"-ERR unknown command\r\n")
