"""Fixtures for the direct-delivery tests: MX sinks on several loopback addresses and a gateway.

``mx_port`` and ``mx_sinks(*addresses)`` (RecordingSinks on several loopback addresses, all on one
port: the gateway's ``direct.port``) come from tests/peers/fixtures.py;
``direct_gateway(dns, **options)`` gives a ``SyncHarness`` (tests/peers/harness.py)
whose chain is only ``direct``, pointed at the dnsmasq ``dns`` and at the sinks' port.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.peers.dnsmasq import DnsmasqPeer
from tests.peers.harness import SyncHarness
from tests.peers.net import free_port

GATEWAY_NAME = "gw.test"
START = 1_800_000_000.0


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
