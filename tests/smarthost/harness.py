"""An in-process gateway for the smarthost tests: queue messages, run deliveries, read events.

It is the real ``Gateway`` (real SQLite queue, real plugin chain) driven by a
``ManualClock``, so tests can move time (POP login window, retry, blocked
logins) without sleeping, and talk to real servers started by tests/peers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mailpipe.core.clock import ManualClock
from mailpipe.core.config import load_config
from mailpipe.core.events import Event
from mailpipe.core.gateway import Gateway
from mailpipe.core.ids import new_queue_id
from mailpipe.core.message import Message, Recipient
from mailpipe.core.queue import MessageDetail
from tests.core.helpers import make_message as core_message


def make_message(subject: str, sender: str, to: str, body: str = "Hello.\n") -> bytes:
    """A small RFC 5322 message with CRLF line ends (the core tests' builder, sender and recipient first)."""
    return core_message(subject, body, sender=sender, to=to)


def smarthost_config(workdir: Path, smarthost: dict[str, Any], **top: Any) -> dict[str, Any]:
    """A whole config: the smarthost entry (with ``smarthost`` options) and a retry entry."""
    return {
        "hostname": "gw.test",
        "state_dir": str(workdir / "state"),
        "listen": ["127.0.0.1:2525"],  # never opened: the harness does not start the intake
        **top,
        "chain": [{"smarthost": smarthost}, {"retry": {"every": "10m", "expire_after": "2d"}}],
    }


class GatewayHarness:
    """``async with GatewayHarness(workdir, config) as h``: an opened gateway without listeners."""

    def __init__(self, workdir: Path, config: dict[str, Any], *, name: str = "gw") -> None:
        self.dir = workdir / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.dir / "mailpipe.yaml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.clock = ManualClock()
        self.gw = Gateway(load_config(self.config_path), clock=self.clock)

    async def __aenter__(self) -> GatewayHarness:
        await self.gw.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.gw.close()

    @property
    def plugin(self) -> Any:
        return self.gw.plugins[0]

    async def submit(self, sender: str, recipients: list[str], data: bytes | None = None) -> str:
        """Queue one message as the intake would; return its queue id."""
        now = self.clock.now()
        data = data or make_message(f"from {sender}", sender, recipients[0])
        message = Message(new_queue_id(now), sender, [Recipient(r) for r in recipients], now, size=len(data))
        await self.gw.queue.store(message, data)
        return message.id

    async def run(self, timeout: float = 60.0) -> None:
        """Deliver everything due now and wait for it."""
        await self.gw.scheduler.run_until_idle(self.clock.now(), timeout=timeout)

    async def detail(self, message_id: str) -> MessageDetail:
        detail = await self.gw.queue.get(message_id)
        assert detail is not None, message_id
        return detail

    async def states(self, message_id: str) -> dict[str, str]:
        detail = await self.detail(message_id)
        return {r.address: r.state.value for r in detail.message.recipients}

    async def events(self, kind: str | None = None) -> list[Event]:
        return await self.gw.queue.events(kind=kind, limit=1000)
