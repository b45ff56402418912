"""Fixtures of the postgres queue tests: one private PostgreSQL cluster per test session, a database per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.peers.postgres import PostgresPeer, available


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresPeer]:
    """A private PostgreSQL 15 cluster on 127.0.0.1 and a free port, started once for the session."""
    reason = available()
    if reason:
        pytest.skip(reason)
    peer = PostgresPeer(tmp_path_factory.mktemp("postgres") / "cluster")
    with peer:
        yield peer


@pytest.fixture
def pg_dsn(postgres: PostgresPeer) -> str:
    """The DSN of a fresh, empty database on the session's cluster."""
    return postgres.create_database()
