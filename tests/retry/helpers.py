"""A gateway driven by a ManualClock, delivering to a real recording SMTP sink via the smarthost plugin."""

from __future__ import annotations

import asyncio
import smtplib
from pathlib import Path
from typing import Any

import yaml

from mailpipe.core.clock import ManualClock
from mailpipe.core.config import load_config
from mailpipe.core.gateway import Gateway
from mailpipe.core.ids import new_queue_id
from mailpipe.core.message import Message, Recipient
from tests.peers.net import free_port
from tests.peers.sink import RecordingSink

HOSTNAME = "gw.retry.test"


def write_config(workdir: Path, sink: RecordingSink, *, retry: dict[str, Any] | None = None,
                 delivery: dict[str, Any] | None = None, queue: dict[str, Any] | None = None) -> Path:
    """A config file: smarthost to ``sink`` (no TLS), then ``retry`` with the given options."""
    config = {
        "hostname": HOSTNAME,
        "state_dir": str(workdir / "state"),
        "listen": [f"127.0.0.1:{free_port()}"],
        "queue": {"sqlite": {"path": str(workdir / "queue.sqlite3"), **(queue or {})}},
        "delivery": delivery or {},
        "chain": [
            {"smarthost": {"server": "127.0.0.1", "port": sink.port, "tls": "none"}},
            {"retry": retry or {}},
        ],
    }
    path = workdir / "mailpipe.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


async def open_gateway(config: Path, clock: ManualClock) -> Gateway:
    gw = Gateway(load_config(config), clock=clock)
    await gw.open()
    return gw


def body(sender: str, to: list[str], subject: str = "Quarterly report") -> bytes:
    return (f"From: {sender}\r\nTo: {', '.join(to)}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '.')}@origin.test>\r\n\r\nHello.\r\n").encode()


async def queue_message(gw: Gateway, sender: str, to: list[str], subject: str = "Quarterly report",
                        ) -> Message:
    """Store a message in the queue at the clock's time, as the intake would."""
    now = gw.clock.now()
    data = body(sender or "nobody@origin.test", to, subject)
    msg = Message(new_queue_id(now), sender, [Recipient(a) for a in to], now, size=len(data))
    await gw.queue.store(msg, data)
    return msg


async def send_via_intake(gw: Gateway, sender: str, to: list[str], subject: str = "Quarterly report") -> None:
    """Hand a message to the gateway's real SMTP intake with smtplib (in a thread)."""
    spec = gw.settings.listen[0]

    def send() -> None:
        with smtplib.SMTP(spec.host, spec.port, timeout=10) as client:
            client.sendmail(sender, to, body(sender, to, subject))

    await asyncio.to_thread(send)


async def states(gw: Gateway, message_id: str) -> dict[str, str]:
    detail = await gw.queue.get(message_id)
    assert detail is not None
    return {r.address: r.state.value for r in detail.message.recipients}


async def next_attempt(gw: Gateway, message_id: str, address: str) -> float:
    detail = await gw.queue.get(message_id)
    assert detail is not None
    return next(r.next_attempt for r in detail.message.recipients if r.address == address)


def reports(sink: RecordingSink) -> list[Any]:
    """Messages the sink got from the null sender (delivery status notifications)."""
    return [m for m in sink.messages if m.mail_from in ("", "<>")]
