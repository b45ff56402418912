"""Types of the direct tests' fixtures (tests/direct/conftest.py), for the tests' signatures."""

from __future__ import annotations

from collections.abc import Callable

from tests.peers.fixtures import DnsmasqFactory
from tests.peers.sink import RecordingSink
from tests.support.harness import SyncHarness

#: ``mx_sinks(*addresses)``: RecordingSinks on those addresses, all on ``mx_port``.
MxSinks = Callable[..., list[RecordingSink]]
#: ``direct_gateway(dns, settings=None, **direct_options)``: a SyncHarness delivering with ``direct`` only.
DirectGateway = Callable[..., SyncHarness]

__all__ = ["DirectGateway", "DnsmasqFactory", "MxSinks"]
