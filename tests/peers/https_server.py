"""An HTTPS server for MTA-STS policies and TLS-report uploads (stdlib ``http.server`` in a thread).

It serves ``documents[(host, path)] = Document(...)`` by the request's ``Host`` header (so
one server on one address stands for ``mta-sts.a.test``, ``mta-sts.b.test`` ...), answers
404 for anything else, and records every request (method, host, path, headers, body), so
tests count policy fetches and read uploaded reports. The certificate comes from the test
CA (trustme); documents may be changed while it runs.
"""

from __future__ import annotations

import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Document:
    """What one URL answers: status, content type, body; ``delay`` seconds before answering."""

    body: bytes
    content_type: str = "text/plain"
    status: int = 200
    delay: float = 0.0


@dataclass
class Request:
    """One request as the server saw it."""

    method: str
    host: str
    path: str
    headers: dict[str, str]
    body: bytes
    time: float = field(default_factory=time.monotonic)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        return

    def _answer(self, body: bytes) -> None:
        host = (self.headers.get("Host") or "").split(":")[0].lower()
        owner = self.server.owner
        with owner.lock:
            owner.requests.append(Request(self.command, host, self.path, dict(self.headers.items()), body))
            doc = owner.documents.get((host, self.path))
            if doc is None and self.command == "POST":
                doc = owner.documents.get((host, "POST " + self.path))
        if doc is None:
            doc = Document(b"not found\n", status=404)
        if doc.delay:
            time.sleep(doc.delay)
        self.send_response(doc.status)
        self.send_header("Content-Type", doc.content_type)
        self.send_header("Content-Length", str(len(doc.body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(doc.body)
        self.close_connection = True

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._answer(b"")

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        self._answer(self.rfile.read(length))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # socketserver's default backlog of 5 overflows when a busy gateway fetches at once

    def __init__(self, address: tuple[str, int], owner: HttpsPeer) -> None:
        self.owner = owner
        super().__init__(address, _Handler)


class HttpsPeer:
    """HTTPS on ``host:port`` with the certificate ``cert_file``/``key_file`` (chain in ``cert_file``).

    ``port=0`` picks a free one (see ``port`` after start). Use as a context manager.
    """

    def __init__(self, host: str, cert_file: str, key_file: str, *, port: int = 0) -> None:
        self.host = host
        self.documents: dict[tuple[str, str], Document] = {}
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        self._ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._ctx.load_cert_chain(cert_file, key_file)
        self._server = _Server((host, port), self)
        self._server.socket = self._ctx.wrap_socket(self._server.socket, server_side=True,
                                                    do_handshake_on_connect=False)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def policy(self, domain: str, text: str, **kwargs: Any) -> None:
        """Serve ``text`` as the MTA-STS policy of ``domain``."""
        self.documents[(f"mta-sts.{domain}", "/.well-known/mta-sts.txt")] = Document(text.encode(), **kwargs)

    def fetches(self, domain: str) -> int:
        """How many times the policy of ``domain`` was asked for."""
        with self.lock:
            return sum(1 for r in self.requests
                       if r.host == f"mta-sts.{domain}" and r.path == "/.well-known/mta-sts.txt")

    def posts(self, path: str | None = None) -> list[Request]:
        """The POST requests received (to ``path`` when given)."""
        with self.lock:
            return [r for r in self.requests if r.method == "POST" and (path is None or r.path == path)]

    def __enter__(self) -> HttpsPeer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def policy_text(mode: str, mx: list[str], max_age: int = 86400) -> str:
    """An MTA-STS policy file (RFC 8461 3.2), CRLF line ends."""
    lines = ["version: STSv1", f"mode: {mode}", *(f"mx: {m}" for m in mx), f"max_age: {max_age}"]
    return "\r\n".join(lines) + "\r\n"
