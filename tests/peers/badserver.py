"""A real SMTP server that misbehaves on purpose, for faults no real server shows on demand.

It speaks just enough SMTP (greeting, EHLO, MAIL, RCPT, DATA) and then does what
``fault`` says at the chosen step: hang, drop the connection, answer garbage.
Every connection and every message body it saw is recorded, so tests can prove
what reached it.
"""

from __future__ import annotations

import socket
import ssl
import threading
from dataclasses import dataclass, field

FAULTS = (
    "hang_after_connect",  # accept, never greet
    "hang_after_data",     # take the whole message, never answer the final dot
    "drop_mid_data",       # close the connection halfway through the message
    "close_before_reply",  # read the final dot, close without a reply
    "garbage_greeting",    # greet with bytes that are not SMTP
    "garbage_after_rcpt",  # answer DATA with garbage
    "starttls_injection",  # answer STARTTLS with 220 plus an injected plaintext reply (CVE-2011-0411)
    "ok",                  # behave
)


@dataclass
class BadServer:
    """A threaded TCP server on ``host`` doing ``fault``; use as a context manager."""

    fault: str
    host: str = "127.0.0.1"
    port: int = 0
    connections: int = 0
    bodies: list[bytes] = field(default_factory=list)
    cert: tuple[str, str] | None = None  # (cert file, key file) for STARTTLS

    def __post_init__(self) -> None:
        assert self.fault in FAULTS, self.fault
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((self.host, self.port))
        self.port = self._sock.getsockname()[1]
        self._sock.listen(64)
        self._stop = threading.Event()
        self._open: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> BadServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._sock.close()
        for c in self._open:
            try:
                c.close()
            except OSError:
                pass

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            self._open.append(conn)
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn: socket.socket) -> None:
        conn.settimeout(120)
        f = conn.makefile("rb")
        try:
            if self.fault == "hang_after_connect":
                self._stop.wait(120)
                return
            if self.fault == "garbage_greeting":
                conn.sendall(b"\x00\xffHELLO? this is not smtp\r\n")
                self._stop.wait(120)
                return
            conn.sendall(b"220 bad.test ESMTP\r\n")
            while True:
                line = f.readline()
                if not line:
                    return
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
                    f = conn.makefile("rb")
                elif cmd in (b"MAIL", b"RCPT", b"RSET", b"NOOP"):
                    conn.sendall(b"250 2.0.0 ok\r\n")
                elif cmd == b"QUIT":
                    conn.sendall(b"221 bye\r\n")
                    return
                elif cmd == b"DATA":
                    if self.fault == "garbage_after_rcpt":
                        conn.sendall(b"\xfe\xfe garbage\r\n")
                        continue
                    conn.sendall(b"354 go ahead\r\n")
                    body = b""
                    while True:
                        chunk = f.readline()
                        if not chunk:
                            return
                        if self.fault == "drop_mid_data" and len(body) > 200:
                            conn.close()
                            return
                        if chunk == b".\r\n":
                            break
                        body += chunk
                    self.bodies.append(body)
                    if self.fault == "hang_after_data":
                        self._stop.wait(120)
                        return
                    if self.fault == "close_before_reply":
                        conn.close()
                        return
                    conn.sendall(b"250 2.0.0 queued-for-real\r\n")
                else:
                    conn.sendall(b"502 5.5.1 unknown\r\n")
        except OSError:
            return
        finally:
            try:
                conn.close()
            except OSError:
                pass
