"""Fixtures of the black-box promise tests.

``mx_addresses``: the addresses ``mx_port`` must be free on (tests/peers/fixtures.py's ``mx_port`` and
``mx_sinks``), here also 127.0.1.30 for a gateway that is its own MX; ``password_hash``: the argon2 hash of the
console test user's password (tests/console's user).
"""

from __future__ import annotations

import pytest

from mailpipe.core.intake.auth import hash_password
from tests.console.conftest import PASSWORD
from tests.peers.fixtures import MX_ADDRESSES


@pytest.fixture
def mx_addresses() -> tuple[str, ...]:
    """Every address a test of this folder binds on ``mx_port``: MX sinks, and a gateway that is its own MX."""
    return (*MX_ADDRESSES, "127.0.1.30")


@pytest.fixture(scope="session")
def password_hash() -> str:
    """The argon2 hash of the console user's password."""
    return hash_password(PASSWORD)
