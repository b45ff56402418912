"""Fixtures of the postgres queue tests: a database per test on the session's cluster (``postgres``,
from tests/peers/fixtures.py)."""

from __future__ import annotations

import pytest

from tests.peers.postgres import PostgresPeer


@pytest.fixture
def pg_dsn(postgres: PostgresPeer) -> str:
    """The DSN of a fresh, empty database on the session's cluster."""
    return postgres.create_database()
