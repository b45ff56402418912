"""Types of the direct tests' fixtures (tests/direct/conftest.py), for the tests' signatures."""

from __future__ import annotations

from collections.abc import Callable

from tests.peers.fixtures import DnsmasqFactory, MxSinks
from tests.peers.harness import SyncHarness

#: ``direct_gateway(dns, settings=None, **direct_options)``: a SyncHarness delivering with ``direct`` only.
DirectGateway = Callable[..., SyncHarness]

__all__ = ["DirectGateway", "DnsmasqFactory", "MxSinks"]
