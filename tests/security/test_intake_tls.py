"""STARTTLS under attack: failed handshakes are one warning line each, and STARTTLS inside TLS is refused.

Issue 14, findings 8 and 9. Before: each failed handshake wrote ~1 KB of ERROR traceback,
and a second STARTTLS inside TLS was accepted (TLS on TLS), its failure adding asyncio's
``SSLProtocol._abort()`` TypeError traceback.
"""

from __future__ import annotations

import socket
import ssl

from tests.core.helpers import RawClient
from tests.peers.certs import TestPKI
from tests.peers.mailpipe import MailpipeProcess
from tests.peers.net import wait_until

from .conftest import GatewayFactory, greeting, tls_client

HANDSHAKES = 20


def starttls_then(host: str, port: int, kind: str) -> None:
    """Say STARTTLS, then break the handshake: garbage instead of a ClientHello, or hang up at once."""
    c = RawClient(host, port)
    c.cmd("EHLO breaker.test")
    assert c.cmd("STARTTLS")[0] == 220
    if kind == "garbage":
        c.send(b"\x16\x03\x01\x00\x05hello" + b"x" * 100)
        c.sock.settimeout(10)
        try:
            while c.sock.recv(4096):  # bounded by the timeout: the server answers with an alert and closes
                pass
        except OSError:
            pass
    c.close()


def test_failed_handshakes_are_one_warning_line_each(intake_gateway: GatewayFactory) -> None:
    """20 broken STARTTLS handshakes (garbage, hang-up): 20 one-line warnings with the address, no traceback."""
    gw = intake_gateway()
    host, port = gw.address
    before = len(gw.log_text().encode())
    for n in range(HANDSHAKES):
        starttls_then(host, port, "garbage" if n % 2 else "hangup")
    wait_until(lambda: gw.log_text().count("TLS handshake with 127.0.0.1 failed") >= HANDSHAKES, 20,
               f"{HANDSHAKES} handshake warnings", gw.log_text)
    log = gw.log_text()
    written = len(log.encode()) - before
    lines = [ln for ln in log.splitlines() if "TLS handshake with" in ln]
    assert len(lines) == HANDSHAKES and all(" WARNING mailpipe.intake: " in ln for ln in lines), lines
    assert "Traceback" not in log and "ERROR" not in log and "TypeError" not in log, log[-3000:]
    assert greeting(host, port).startswith(b"220")  # every slot was given back
    print(f"\nfinding 8: {HANDSHAKES} failed handshakes wrote {written} bytes of log in {len(lines)} lines, "
          f"e.g. {lines[0].split(' ', 2)[2]!r}")


def test_starttls_inside_tls_is_refused_with_503(intake_gateway: GatewayFactory, pki: TestPKI) -> None:
    """RFC 3207: a second STARTTLS is answered 503, the TLS session goes on; garbage after it changes nothing."""
    gw = intake_gateway(implicit_tls=True)
    c = tls_client(gw, pki)
    assert c.cmd("STARTTLS") == (503, "503 5.5.1 Error: TLS already active")
    code, text = c.cmd("EHLO client.test")
    assert code == 250 and "STARTTLS" not in text
    assert c.cmd("MAIL FROM:<a@example.org>")[0] == 250
    c.close()
    implicit = implicit_tls_client(gw, pki)  # the same over the implicit-TLS listener
    assert implicit.cmd("STARTTLS") == (503, "503 5.5.1 Error: TLS already active")
    assert implicit.cmd("NOOP")[0] == 250
    implicit.close()
    assert "Traceback" not in gw.log_text()
    print("\nfinding 9: STARTTLS inside TLS (after STARTTLS, and on an implicit-TLS listener) answered "
          "'503 5.5.1 Error: TLS already active'; the session went on")


def implicit_tls_client(gw: MailpipeProcess, pki: TestPKI) -> RawClient:
    """A raw client on the gateway's second (implicit TLS) listener, greeted and after EHLO."""
    host, _, port = gw.config["listen"][1]["address"].rpartition(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    c = RawClient.__new__(RawClient)
    c.sock = ssl.create_default_context(cafile=str(pki.ca_file)).wrap_socket(sock, server_hostname="127.0.0.1")
    c.buf = b""
    c.greeting = c.reply()
    assert c.greeting[0] == 220 and c.cmd("EHLO client.test")[0] == 250
    return c
