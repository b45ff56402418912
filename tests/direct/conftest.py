"""Fixtures for the direct-delivery tests: MX sinks on several loopback addresses and a gateway.

``mx_sinks(*addresses)`` starts a RecordingSink on each address, all on one
port (the gateway's ``direct.port``, free on every address the tests use);
``direct_gateway(dns, **options)`` gives a ``SyncHarness`` (tests/support/harness.py)
whose chain is only ``direct``, pointed at the dnsmasq ``dns`` and at the sinks' port.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.peers.dnsmasq import DnsmasqPeer
from tests.peers.net import free_port
from tests.peers.sink import RecordingSink
from tests.support.harness import SyncHarness

GATEWAY_NAME = "gw.test"
START = 1_800_000_000.0

#: Every address an MX server of these tests listens on, all on ``mx_port``.
MX_ADDRESSES = ("127.0.1.21", "127.0.1.22", "127.0.1.23", "::1")


def _bindable(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port_on_all(addresses: tuple[str, ...], tries: int = 50) -> int:
    """A TCP port that nothing is bound to on any of ``addresses`` right now."""
    for _ in range(tries):
        port = free_port(addresses[0])
        if all(_bindable(a, port) for a in addresses[1:]):
            return port
    raise RuntimeError(f"no port free on all of {addresses} after {tries} tries")


def direct_config(workdir: Path, dns: DnsmasqPeer | None, port: int, options: dict[str, Any],
                  settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """A whole config whose chain is only ``direct`` (to ``port``, resolving through ``dns``)."""
    direct = {"port": port, **options}
    if dns is not None:
        host, dport = dns.nameserver
        direct.setdefault("dns_servers", [f"{host}:{dport}"])
    return {
        "hostname": GATEWAY_NAME,
        "state_dir": str(workdir / "state"),
        "listen": [f"127.0.0.1:{free_port()}"],
        "delivery": {"timeout": "5s"},
        "chain": [{"direct": direct}],
        **(settings or {}),
    }


@pytest.fixture
def mx_port() -> int:
    """The port every MX sink of a test listens on (the gateway's ``direct.port``)."""
    return free_port_on_all(MX_ADDRESSES)


@pytest.fixture
def mx_sinks(mx_port: int) -> Iterator[Callable[..., list[RecordingSink]]]:
    """Start RecordingSinks on the given loopback addresses, all on ``mx_port``."""
    with contextlib.ExitStack() as stack:
        def make(*addresses: str) -> list[RecordingSink]:
            assert set(addresses) <= set(MX_ADDRESSES), f"add {addresses} to MX_ADDRESSES so the port is checked"
            return [stack.enter_context(RecordingSink(a, mx_port)) for a in addresses]

        yield make


@pytest.fixture
def direct_gateway(workdir: Path, mx_port: int) -> Iterator[Callable[..., SyncHarness]]:
    """``make(dns, settings=None, port=mx_port, **direct_options)`` -> a SyncHarness; closed at the end."""
    with contextlib.ExitStack() as stack:
        made: list[SyncHarness] = []

        def make(dns: DnsmasqPeer | None, *, settings: dict[str, Any] | None = None, **options: Any) -> SyncHarness:
            options.setdefault("port", mx_port)
            config = direct_config(workdir / f"gw{len(made)}", dns, options.pop("port"), options, settings)
            h = SyncHarness(workdir / f"gw{len(made)}", config, start=START)
            stack.callback(h.close)
            made.append(h)
            return h

        yield make
