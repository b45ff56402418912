"""Fixtures of the policy stage tests: a private clamd per session; PostgreSQL from the postgres tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.peers.clamd import ClamdPeer, available
from tests.postgres.conftest import pg_dsn  # noqa: F401 - fixture shared with the postgres tests (postgres: tests/peers)


@pytest.fixture(scope="session")
def clamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClamdPeer]:
    """A private clamd with the EICAR test signature, on a Unix socket and a loopback port."""
    reason = available()
    if reason:
        pytest.skip(reason)
    with ClamdPeer(tmp_path_factory.mktemp("clamd")) as peer:
        yield peer
