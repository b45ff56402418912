"""direct's HTTPS client (MTA-STS policies, TLS reports): a connection cut during the TLS handshake is tried
once more; a second cut, or a certificate that does not verify, fails the request as before."""

from __future__ import annotations

import asyncio
import socket
import struct
from pathlib import Path

import pytest

from mailpipe.core.tlsfiles import client_tls_context
from mailpipe.plugins.direct.https import HttpsClient, HttpsError
from mailpipe.plugins.direct.mx import MxResolver
from tests.peers.certs import make_pki
from tests.peers.https_server import Document, HttpsPeer
from tests.peers.tcp import TcpRelay

NAME = "mta-sts.cut.test"
POLICY = b"version: STSv1\r\nmode: enforce\r\nmx: mx.cut.test\r\nmax_age: 86400\r\n"


class ResettingRelay(TcpRelay):
    """Relays to the HTTPS peer, but answers the first ``resets`` connections with a TCP reset."""

    def __init__(self, upstream: tuple[str, int], host: str, resets: int) -> None:
        super().__init__(upstream, host)
        self.resets = resets

    def admit(self) -> bool:
        return self.connections > self.resets

    def accepted(self, conn: socket.socket) -> None:
        if not self.admit():
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
            conn.close()
            return
        super().accepted(conn)


@pytest.fixture
def world(tmp_path: Path, dnsmasq_factory):
    """A policy server for ``NAME`` (certificate from a test CA) and a DNS server naming the relay's address."""
    pki = make_pki(tmp_path, (NAME,))
    with HttpsPeer("127.0.1.60", str(pki.cert_file), str(pki.key_file)) as peer:
        peer.documents[(NAME, "/.well-known/mta-sts.txt")] = Document(POLICY)
        dns = dnsmasq_factory([f"address=/{NAME}/127.0.1.61"])
        yield pki, peer, dns


def fetch(pki, dns, port: int, ca: Path | None = None) -> bytes:
    """One policy fetch through the client as ``direct`` builds it."""
    async def main() -> bytes:
        resolver = MxResolver([dns.nameserver], timeout=5.0)
        client = HttpsClient(resolver, client_tls_context(ca_file=ca or pki.ca_file), port=port, timeout=10.0)
        answer = await client.request("GET", NAME, "/.well-known/mta-sts.txt")
        return answer.body

    return asyncio.run(main())


def test_one_cut_handshake_is_tried_again(world) -> None:
    """The first connection is reset during the handshake: the second one fetches the policy."""
    pki, peer, dns = world
    with ResettingRelay(("127.0.1.60", peer.port), "127.0.1.61", resets=1) as relay:
        assert fetch(pki, dns, relay.port) == POLICY
        assert relay.connections == 2


def test_two_cuts_fail_the_fetch(world) -> None:
    """Reset twice: the fetch fails (no third try)."""
    pki, peer, dns = world
    with ResettingRelay(("127.0.1.60", peer.port), "127.0.1.61", resets=2) as relay:
        # the second reset may reach the client while it still connects or already in the handshake
        with pytest.raises(HttpsError, match="TLS failed|cannot connect"):
            fetch(pki, dns, relay.port)
        assert relay.connections == 2


def test_a_certificate_that_does_not_verify_is_not_tried_again(world, tmp_path: Path) -> None:
    """A certificate error is an answer, not a cut connection: one connection only."""
    pki, peer, dns = world
    other = make_pki(tmp_path / "other", (NAME,))
    with ResettingRelay(("127.0.1.60", peer.port), "127.0.1.61", resets=0) as relay:
        with pytest.raises(HttpsError, match="TLS failed"):
            fetch(pki, dns, relay.port, ca=other.ca_file)
        assert relay.connections == 1
