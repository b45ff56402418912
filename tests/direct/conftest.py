"""Fixtures for the direct-delivery tests: MX sinks on several loopback addresses and a gateway.

``mx_sinks(*addresses)`` starts a RecordingSink on each address, all on one
port (the gateway's ``direct.port``); ``direct_gateway(dns, **options)`` gives a
``DirectGateway``: an in-process Gateway whose chain is only ``direct``, pointed
at the dnsmasq ``dns`` and at the sinks' port.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mailpipe.core.clock import ManualClock
from mailpipe.core.config import load_config
from mailpipe.core.gateway import Gateway
from mailpipe.core.ids import new_queue_id
from mailpipe.core.message import Message, Recipient
from mailpipe.core.queue import MessageDetail
from tests.peers.dnsmasq import DnsmasqPeer
from tests.peers.net import free_port
from tests.peers.sink import RecordingSink

GATEWAY_NAME = "gw.test"
SENDER = "sender@origin.test"


def message_bytes(subject: str = "direct test") -> bytes:
    return (
        f"From: {SENDER}\r\nTo: someone@example.test\r\nSubject: {subject}\r\n"
        f"Message-ID: <{time.monotonic_ns()}@origin.test>\r\n\r\nHello.\r\n"
    ).encode()


class DirectGateway:
    """A Gateway (in this process) delivering with ``direct`` only; drive it with ``deliver``."""

    def __init__(self, workdir: Path, dns: DnsmasqPeer | None, port: int, options: dict[str, Any],
                 settings: dict[str, Any] | None = None) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        direct = {"port": port, **options}
        if dns is not None:
            host, dport = dns.nameserver
            direct.setdefault("dns_servers", [f"{host}:{dport}"])
        config = {
            "hostname": GATEWAY_NAME,
            "state_dir": str(workdir / "state"),
            "listen": [f"127.0.0.1:{free_port()}"],
            "delivery": {"timeout": "5s"},
            "chain": [{"direct": direct}],
            **(settings or {}),
        }
        self.config_path = workdir / "mailpipe.yaml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.clock = ManualClock(1_800_000_000.0)
        self.loop = asyncio.new_event_loop()
        self.gw = Gateway(load_config(self.config_path), clock=self.clock)
        self.run(self.gw.open())

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    @property
    def plugin(self) -> Any:
        return self.gw.plugins[0]

    def submit(self, recipients: list[str], *, sender: str = SENDER, data: bytes | None = None) -> str:
        """Queue a message (as the intake would) and return its id."""
        mid = new_queue_id(self.clock.now())
        body = data or message_bytes()
        msg = Message(mid, sender, [Recipient(r) for r in recipients], self.clock.now(), size=len(body))
        self.run(self.gw.queue.store(msg, body))
        return mid

    def deliver(self, timeout: float = 60.0) -> float:
        """Run every delivery due now to the end; return how long it took."""
        started = time.monotonic()
        self.run(self.gw.scheduler.run_until_idle(self.clock.now(), timeout=timeout))
        return time.monotonic() - started

    def detail(self, mid: str) -> MessageDetail:
        detail = self.run(self.gw.queue.get(mid))
        assert detail is not None, f"message {mid} not in the queue"
        return detail

    def states(self, mid: str) -> dict[str, str]:
        return {r.address: str(r.state) for r in self.detail(mid).message.recipients}

    def attempts(self, mid: str) -> dict[str, Any]:
        """recipient -> its latest attempt."""
        return {a.recipient: a for a in sorted(self.detail(mid).attempts, key=lambda a: a.time)}

    def events(self, kind: str) -> list[Any]:
        return self.run(self.gw.queue.events(kind=kind))

    def close(self) -> None:
        try:
            self.run(self.gw.close())
        finally:
            self.loop.close()


@pytest.fixture
def mx_port() -> int:
    """The port every MX sink of a test listens on (the gateway's ``direct.port``)."""
    return free_port("127.0.1.21")


@pytest.fixture
def mx_sinks(mx_port: int) -> Iterator[Callable[..., list[RecordingSink]]]:
    """Start RecordingSinks on the given loopback addresses, all on ``mx_port``."""
    with contextlib.ExitStack() as stack:
        def make(*addresses: str) -> list[RecordingSink]:
            return [stack.enter_context(RecordingSink(a, mx_port)) for a in addresses]

        yield make


@pytest.fixture
def direct_gateway(workdir: Path, mx_port: int) -> Iterator[Callable[..., DirectGateway]]:
    """``make(dns, **direct_options)`` -> a DirectGateway; closed at the end of the test."""
    made: list[DirectGateway] = []

    def make(
        dns: DnsmasqPeer | None, *, settings: dict[str, Any] | None = None, **options: Any,
    ) -> DirectGateway:
        gw = DirectGateway(workdir / f"gw{len(made)}", dns, mx_port, options, settings)
        made.append(gw)
        return gw

    yield make
    for gw in made:
        gw.close()
