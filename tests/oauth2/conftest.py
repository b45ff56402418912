"""Fixtures of the OAuth2 tests: the HTTPS token endpoint with registered clients, a client certificate."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from tests.peers.certs import TestPKI
from tests.peers.token_server import TokenServer

SECRET = "s3cr3t~Client.Secret-4711"
APP = "11111111-2222-3333-4444-555555555555"
CERT_APP = "99999999-8888-7777-6666-555555555555"
GMAIL_APP = "123456789-gmail.apps.googleusercontent.com"
SCOPE = "https://outlook.office365.com/.default"
GMAIL_SCOPE = "https://mail.google.com/"


@dataclass(frozen=True)
class ClientCert:
    """A client certificate and its key (PEM files, the key mode 0600)."""

    cert_file: Path
    key_file: Path


@pytest.fixture(scope="session")
def client_cert(tmp_path_factory: pytest.TempPathFactory) -> ClientCert:
    folder = tmp_path_factory.mktemp("oauth2-client")
    issued = trustme.CA().issue_cert("mailpipe-gateway.example.org")
    cert = ClientCert(folder / "client.pem", folder / "client.key")
    issued.cert_chain_pems[0].write_to_path(str(cert.cert_file))
    issued.private_key_pem.write_to_path(str(cert.key_file))
    os.chmod(cert.key_file, 0o600)
    return cert


@pytest.fixture
def token_server(pki: TestPKI, client_cert: ClientCert) -> Iterator[TokenServer]:
    """An endpoint knowing APP (secret), CERT_APP (certificate) and GMAIL_APP (refresh tokens, rotating)."""
    with TokenServer(pki) as server:
        server.add_client(APP, secret=SECRET, scopes=(SCOPE,))
        server.add_client(CERT_APP, cert_file=client_cert.cert_file, scopes=(SCOPE,))
        server.add_client(GMAIL_APP, secret=SECRET, scopes=(GMAIL_SCOPE,))
        yield server
