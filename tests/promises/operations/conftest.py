"""Fixtures of the black-box promise tests.

``mx_port``/``mx_sinks``: RecordingSinks as MX hosts on 127.0.1.x and ::1, all on one port that is free on
every address these tests use (the gateway's ``direct.port``); ``password_hash``: the argon2 hash of the
console test user's password (tests/console's user).
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterator

import pytest

from mailpipe.core.intake.auth import hash_password
from tests.console.conftest import PASSWORD
from tests.peers.net import free_port
from tests.peers.sink import RecordingSink

#: Every address a test of this folder binds on ``mx_port``: MX sinks, and a gateway that is its own MX.
MX_ADDRESSES = ("127.0.1.21", "127.0.1.22", "127.0.1.23", "127.0.1.30", "::1")


def _bindable(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


@pytest.fixture
def mx_port() -> int:
    """A TCP port free on every address of MX_ADDRESSES right now."""
    for _ in range(50):
        port = free_port(MX_ADDRESSES[0])
        if all(_bindable(a, port) for a in MX_ADDRESSES[1:]):
            return port
    raise RuntimeError(f"no port free on all of {MX_ADDRESSES}")


@pytest.fixture
def mx_sinks(mx_port: int) -> Iterator[Callable[..., list[RecordingSink]]]:
    """``make(*addresses)``: RecordingSinks on those addresses, all on ``mx_port``; stopped after the test."""
    with contextlib.ExitStack() as stack:
        def make(*addresses: str) -> list[RecordingSink]:
            assert set(addresses) <= set(MX_ADDRESSES), addresses
            return [stack.enter_context(RecordingSink(a, mx_port)) for a in addresses]

        yield make


@pytest.fixture(scope="session")
def password_hash() -> str:
    """The argon2 hash of the console user's password."""
    return hash_password(PASSWORD)
