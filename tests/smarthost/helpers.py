"""Configs for the smarthost tests (run through tests/peers/harness.py) and a message builder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.core.helpers import make_message as core_message
from tests.peers.net import free_port


def make_message(subject: str, sender: str, to: str, body: str = "Hello.\n") -> bytes:
    """A small RFC 5322 message with CRLF line ends (the core tests' builder, sender and recipient first)."""
    return core_message(subject, body, sender=sender, to=to)


def smarthost_config(workdir: Path, smarthost: dict[str, Any], **top: Any) -> dict[str, Any]:
    """A whole config: the smarthost entry (with ``smarthost`` options) and a retry entry."""
    return {
        "hostname": "gw.test",
        "state_dir": str(workdir / "state"),
        "listen": [f"127.0.0.1:{free_port()}"],  # opened only by Harness(listen=True)
        **top,
        "chain": [{"smarthost": smarthost}, {"retry": {"every": "10m", "expire_after": "2d"}}],
    }
