"""Test certificates made by trustme: one CA, one server certificate for loopback."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import trustme

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "127.0.1.1", "127.0.1.2", "127.0.1.25")


@dataclass(frozen=True)
class TestPKI:
    """Paths of a CA certificate and a server certificate/key signed by it."""

    __test__ = False  # not a pytest test class

    ca_file: Path
    cert_file: Path
    key_file: Path


def make_pki(directory: Path, names: tuple[str, ...] = LOOPBACK_NAMES) -> TestPKI:
    """Write a CA and a server certificate for ``names`` into ``directory`` (world-readable).

    The files are readable by every user so that Postfix and Dovecot, which drop
    privileges, can read them too.
    """
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o755)
    ca = trustme.CA()
    server = ca.issue_cert(*names)
    pki = TestPKI(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    ca.cert_pem.write_to_path(str(pki.ca_file))
    server.cert_chain_pems[0].write_to_path(str(pki.cert_file))
    for extra in server.cert_chain_pems[1:]:
        with open(pki.cert_file, "ab") as fh:
            fh.write(extra.bytes())
    server.private_key_pem.write_to_path(str(pki.key_file))
    for p in (pki.ca_file, pki.cert_file, pki.key_file):
        os.chmod(p, 0o644)
    return pki
