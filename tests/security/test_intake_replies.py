"""Multi-line replies in one send, and nmap's smtp-open-relay finding nothing.

Issue 14, finding 10. Before: EHLO's reply left in one TCP segment per line, so scanners
that read a reply per segment (nmap's smtp-open-relay, smtpsmug) read one reply behind and
reported a false "open relay".
"""

from __future__ import annotations

import shutil
import socket
import subprocess

import pytest

from tests.peers.certs import TestPKI

from .conftest import GatewayFactory, tls_client

ROUNDS = 20


def first_read_holds_the_whole_reply(sock: socket.socket, command: bytes) -> tuple[bool, bytes]:
    """Send ``command``; whether the first ``recv`` already holds the reply's last line (``250 ``)."""
    sock.sendall(command)
    first = sock.recv(65536)
    data = first
    while not any(line.startswith(b"250 ") for line in data.split(b"\r\n")):  # read the rest, if any
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk
    return data == first, data


def test_a_multi_line_reply_arrives_in_one_read(intake_gateway: GatewayFactory, pki: TestPKI) -> None:
    """20 EHLOs in clear and 20 over TLS: every time the first read holds the whole multi-line reply."""
    gw = intake_gateway()
    host, port = gw.address
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.recv(1024)
        plain = [first_read_holds_the_whole_reply(sock, b"EHLO scanner.test\r\n") for _ in range(ROUNDS)]
    tls = tls_client(gw, pki)
    over_tls = [first_read_holds_the_whole_reply(tls.sock, b"EHLO scanner.test\r\n") for _ in range(ROUNDS)]
    tls.close()
    whole = sum(ok for ok, _ in plain) + sum(ok for ok, _ in over_tls)
    lines = plain[0][1].count(b"\r\n")
    print(f"\nfinding 10: EHLO's {lines}-line reply arrived whole in the first read {whole} times of {2 * ROUNDS}")
    assert whole == 2 * ROUNDS, [data for ok, data in plain + over_tls if not ok][:3]


@pytest.mark.skipif(shutil.which("nmap") is None, reason="nmap is not installed (.ci/install-peers.sh installs it)")
def test_nmap_smtp_open_relay_finds_nothing(intake_gateway: GatewayFactory) -> None:
    """nmap's smtp-open-relay script (16 relay tricks) from a client outside ``relay.networks``: no open relay."""
    gw = intake_gateway(relay={"networks": ["192.0.2.0/24"]})  # 127.0.0.1 may not relay
    host, port = gw.address
    result = subprocess.run(
        ["nmap", "-Pn", "-n", "-sT", "-p", str(port), "--script", "+smtp-open-relay",
         "--script-args", "smtp-open-relay.domain=gw.test,smtp-open-relay.ip=127.0.0.1", host],
        capture_output=True, text=True, timeout=180, check=True,
    )
    out = result.stdout
    verdict = next((line.strip("|_ ") for line in out.splitlines() if "smtp-open-relay:" in line), None)
    print(f"\nfinding 10 (nmap): {verdict}")
    assert verdict == "smtp-open-relay: Server doesn't seem to be an open relay, all tests failed", out
    assert gw.log_text().count("relay denied") >= 10  # the tests that reach RCPT (the rest fail at MAIL or RCPT syntax)
    assert gw.cli_json("queue", "list") == []
