"""Configs for the retry tests: smarthost to a real recording SMTP sink, then ``retry``; run through Harness."""

from __future__ import annotations

import asyncio
import smtplib
from pathlib import Path
from typing import Any

from tests.peers.harness import Harness
from tests.peers.net import free_port
from tests.peers.sink import Received, RecordingSink

HOSTNAME = "gw.retry.test"


def retry_config(workdir: Path, sink: RecordingSink, *, retry: dict[str, Any] | None = None,
                 delivery: dict[str, Any] | None = None, queue: dict[str, Any] | None = None) -> dict[str, Any]:
    """A whole config: smarthost to ``sink`` (no TLS), then ``retry`` with the given options."""
    return {
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


async def send_via_intake(h: Harness, sender: str, to: list[str], data: bytes) -> None:
    """Hand a message to the gateway's real SMTP intake with smtplib (in a thread)."""
    host, port = h.listen_address

    def send() -> None:
        with smtplib.SMTP(host, port, timeout=10) as client:
            client.sendmail(sender, to, data)

    await asyncio.to_thread(send)


def reports(sink: RecordingSink) -> list[Received]:
    """Messages the sink got from the null sender (delivery status notifications)."""
    return [m for m in sink.messages if m.mail_from in ("", "<>")]
