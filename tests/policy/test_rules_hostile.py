"""Hostile input never stalls the intake: deep MIME nesting, huge headers, patterns that would backtrack."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

from mailpipe.plugins.rules.patterns import SafePattern
from tests.peers.harness import Harness
from tests.peers.net import free_port
from tests.peers.sink import RecordingSink

from .helpers import OtherClient, base_config, deep_mime, mail, send, smarthost

EVIL = r"^(a+)+$"  # exponential in a backtracking engine: 'a' * 40 + '!' would take hours with re
RULES = [
    {"name": "no executables", "match": {"attachment_name": r"(?i)\.exe$"},
     "action": {"reject": "554 5.7.1 executable attachments are not accepted"}},
    {"name": "evil pattern", "match": {"header": {"Subject": EVIL}}, "action": {"reject": "554 5.7.1 aaa"}},
    {"name": "evil on names", "match": {"attachment_name": "(x+x+)+y"}, "action": "hold"},
]


def test_safe_engine_is_linear() -> None:
    """RE2 answers at once where Python's re backtracks for ever (shown on a short input only)."""
    started = time.monotonic()
    assert not SafePattern(EVIL).search("a" * 100_000 + "!")
    assert time.monotonic() - started < 1.0
    started = time.monotonic()
    assert not re.search(EVIL, "a" * 22 + "!")  # 2^22 steps already: measurable
    assert time.monotonic() - started > 0.05


def test_hostile_messages_are_answered_quickly(workdir: Path) -> None:
    port = free_port()
    huge_subject = "Subject: " + "\r\n ".join(["a" * 900] * 6000) + "!"  # 5 MB of folded 'a's, then '!'
    hostile = {
        "deep MIME (20000 levels)": (deep_mime(20_000), 554),
        "deep MIME (600 levels)": (deep_mime(600), 554),
        "huge header": (mail().replace(b"Subject: Quarterly report", huge_subject.encode()), 250),
        "pattern bait in a file name": (mail(attachments=[("x" * 50_000 + ".pdf", b"%PDF", "application/pdf")]), 250),
    }

    async def scenario(h: Harness) -> None:
        for what, (data, expected) in hostile.items():
            other = OtherClient(port)
            started = time.monotonic()
            other.start()
            code, _ = await asyncio.to_thread(send, port, data)
            took = time.monotonic() - started
            await asyncio.to_thread(other.join, 30)
            assert code == expected, what
            assert took < 15, f"{what}: {took:.1f}s"
            assert other.took is not None and other.took < 5, f"another client waited {other.took}s during {what}"

    with RecordingSink() as sink:
        config = base_config(workdir, port, [{"rules": {"rules": RULES}}, smarthost(sink.port)],
                             intake={"max_message_size": "40M"})

        async def run() -> None:
            async with Harness(workdir, config, listen=True) as h:
                await scenario(h)

        asyncio.run(run())
