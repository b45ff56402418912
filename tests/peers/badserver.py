"""Real SMTP servers that misbehave on purpose, for faults no well-behaved server shows on demand.

:class:`BadServer` speaks just enough SMTP (greeting, EHLO, STARTTLS, MAIL, RCPT,
DATA) and does what its ``fault`` says at the chosen step: never greet, greet
with a refusal and hang up, hang, drop the connection, answer garbage (see
:data:`FAULTS`). Every connection and every message body it saw is recorded,
so tests can prove what reached it.

:class:`StallingListener` is a listening socket whose accept queue is full, so
a new connect hangs in SYN-SENT: what an unreachable (black-holed) address
looks like, kept on loopback.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from typing import BinaryIO

from .tcp import TcpListener, family

#: What a :class:`BadServer` can do, by name.
FAULTS = {
    "hang_after_connect": "accept, never greet",
    "greet_then_close": "greet with ``greeting`` (e.g. 421), wait briefly for the client's QUIT, hang up",
    "hang_after_greeting": "greet, then never answer anything",
    "hang_after_data": "take the whole message, never answer the final dot",
    "drop_mid_data": "close the connection halfway through the message",
    "close_before_reply": "read the final dot, close without a reply",
    "garbage_greeting": "greet with bytes that are not SMTP",
    "garbage_after_rcpt": "answer DATA with garbage",
    "starttls_injection": "answer STARTTLS with 220 plus an injected plaintext reply (CVE-2011-0411)",
    "ok": "behave",
}

#: How long a hanging session waits before it gives up on its own (the server's stop ends it sooner).
HANG = 120.0


class BadServer(TcpListener):
    """A threaded TCP server on ``host:port`` (0: a free port) doing ``fault``; use as a context manager.

    ``greeting`` is the first line it sends (unless the fault is not to greet);
    ``cert`` (cert file, key file) makes it offer STARTTLS. ``connections``
    counts the connections accepted, ``bodies`` the messages received in full.
    """

    def __init__(self, fault: str = "ok", host: str = "127.0.0.1", port: int = 0, *,
                 greeting: str = "220 bad.test ESMTP", cert: tuple[str, str] | None = None) -> None:
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; choose from {', '.join(FAULTS)}")
        super().__init__(host, port, name=f"badserver-{fault}", backlog=64)
        self.fault = fault
        self.greeting = greeting
        self.cert = cert
        self.bodies: list[bytes] = []

    def accepted(self, conn: socket.socket) -> None:
        """Every connection gets a session thread of its own."""
        self.track(conn)
        threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn: socket.socket) -> None:
        conn.settimeout(HANG)
        with contextlib.suppress(OSError):
            self._converse(conn)

    def _converse(self, conn: socket.socket) -> None:
        """One connection, from the greeting to the end the fault chooses; the connection is closed after it."""
        try:
            if self.fault == "hang_after_connect":
                self.stopping.wait(HANG)
                return
            if self.fault == "garbage_greeting":
                conn.sendall(b"\x00\xffHELLO? this is not smtp\r\n")
                self.stopping.wait(HANG)
                return
            conn.sendall(self.greeting.encode() + b"\r\n")
            if self.fault == "greet_then_close":
                conn.settimeout(2)
                conn.recv(1024)  # the client's QUIT, if it sends one
                return
            if self.fault == "hang_after_greeting":
                self.stopping.wait(HANG)
                return
            conn = self._commands(conn)
        finally:
            with contextlib.suppress(OSError):
                conn.close()

    def _commands(self, conn: socket.socket) -> socket.socket:
        """Answer commands until the session ends; returns the connection (TLS-wrapped after STARTTLS)."""
        f = conn.makefile("rb")
        while True:
            line = f.readline()
            if not line:
                return conn
            cmd = line[:4].upper()
            if cmd in (b"EHLO", b"HELO"):
                tls = b"250-STARTTLS\r\n" if self.cert and not isinstance(conn, ssl.SSLSocket) else b""
                conn.sendall(b"250-bad.test\r\n" + tls + b"250 8BITMIME\r\n")
            elif line.upper().startswith(b"STARTTLS") and self.cert:
                injected = b"250 injected-marker\r\n" if self.fault == "starttls_injection" else b""
                conn.sendall(b"220 2.0.0 ready\r\n" + injected)
                ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                ctx.load_cert_chain(*self.cert)
                conn = ctx.wrap_socket(conn, server_side=True)
                self.track(conn)
                f = conn.makefile("rb")
            elif cmd in (b"MAIL", b"RCPT", b"RSET", b"NOOP"):
                conn.sendall(b"250 2.0.0 ok\r\n")
            elif cmd == b"QUIT":
                conn.sendall(b"221 bye\r\n")
                return conn
            elif cmd == b"DATA":
                if self.fault == "garbage_after_rcpt":
                    conn.sendall(b"\xfe\xfe garbage\r\n")
                    continue
                if not self._data(conn, f):
                    return conn
            else:
                conn.sendall(b"502 5.5.1 unknown\r\n")

    def _data(self, conn: socket.socket, f: BinaryIO) -> bool:
        """One DATA transaction; False when the session ends here (by the fault or the client)."""
        conn.sendall(b"354 go ahead\r\n")
        body = b""
        while True:
            chunk = f.readline()
            if not chunk:
                return False
            if self.fault == "drop_mid_data" and len(body) > 200:
                return False
            if chunk == b".\r\n":
                break
            body += chunk
        self.bodies.append(body)
        if self.fault == "hang_after_data":
            self.stopping.wait(HANG)
            return False
        if self.fault == "close_before_reply":
            return False
        conn.sendall(b"250 2.0.0 queued-for-real\r\n")
        return True


class StallingListener:
    """``host:port`` where a TCP connect neither succeeds nor fails: it hangs until the client gives up."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._sock = socket.socket(family(host), socket.SOCK_STREAM)
        self._sock.bind((host, port))
        self._sock.listen(0)
        self._fillers: list[socket.socket] = []

    def __enter__(self) -> StallingListener:
        # Fill the accept queue (never accepted); after that new SYNs are dropped.
        for _ in range(8):
            filler = socket.socket(family(self.host), socket.SOCK_STREAM)
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
