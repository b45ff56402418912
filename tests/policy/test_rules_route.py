"""``route_via``: rules hand recipients to a named chain entry when mail is routed; ``pipeline route`` agrees."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.peers.harness import Harness
from tests.peers.mailpipe import run_pipeline
from tests.peers.net import free_port
from tests.peers.sink import RecordingSink

from .helpers import base_config, mail, send, smarthost

RULES = [
    {"name": "big mail via the second ISP", "match": {"size_over": "50K"}, "action": {"route_via": "smarthost-big"}},
    {"name": "partners", "match": {"recipient": r"@partner\.example$"}, "action": [{"route_via": "smarthost-big"}]},
    {"name": "never past here", "match": {"sender": "^ceo@"}, "action": "stop"},
    {"name": "unreached", "match": {}, "action": {"route_via": "smarthost-big"}},
]


def test_route_via_named_entry(workdir: Path) -> None:
    async def scenario(h: Harness, port: int, usual: RecordingSink, big: RecordingSink) -> None:
        small = mail()
        large = mail(attachments=[("scan.pdf", b"%PDF" + b"x" * 80_000, "application/pdf")])
        assert (await asyncio.to_thread(send, port, small, "ceo@corp.example"))[0] == 250
        assert (await asyncio.to_thread(send, port, large, "ceo@corp.example"))[0] == 250
        split = ["x@partner.example", "y@other.example"]
        assert (await asyncio.to_thread(send, port, small, "ceo@corp.example", split))[0] == 250
        await h.deliver()
        assert sorted(tuple(m.rcpt_tos) for m in usual.messages) == [("bob@remote.example",), ("y@other.example",)]
        assert sorted(tuple(m.rcpt_tos) for m in big.messages) == [("bob@remote.example",), ("x@partner.example",)]
        assert all(len(m.data) > 80_000 for m in big.messages if m.rcpt_tos == ["bob@remote.example"])
        routes = {a.recipient: a.route for a in await h.attempts() if a.recipient != "bob@remote.example"}
        assert routes == {"x@partner.example": f"smarthost:127.0.0.1:{big.port}",
                          "y@other.example": f"smarthost:127.0.0.1:{usual.port}"}

    with RecordingSink() as usual, RecordingSink() as big:
        port = free_port()
        # smarthost takes everything it is offered, so smarthost-big is reached only through route_via
        config = base_config(workdir, port, [{"rules": {"rules": RULES}}, smarthost(usual.port),
                                             smarthost(big.port, name="smarthost-big")])

        async def run() -> None:
            async with Harness(workdir, config, listen=True) as h:
                await scenario(h, port, usual, big)
                out = (await asyncio.to_thread(run_pipeline, h.config_path, "route", "z@partner.example")).stdout
                assert out.startswith(f"z@partner.example: smarthost via smarthost-big -> 127.0.0.1:{big.port}")

        asyncio.run(run())


def test_route_via_entry_that_does_not_take(workdir: Path) -> None:
    """An entry that declines what route_via hands it leaves the recipients without a route (deferred)."""
    with RecordingSink() as usual, RecordingSink() as big:
        port = free_port()
        rules = [{"match": {"recipient": "@partner"}, "action": {"route_via": "smarthost-big"}}]
        config = base_config(workdir, port, [{"rules": {"rules": rules}}, smarthost(usual.port),
                                             smarthost(big.port, name="smarthost-big", domains=["elsewhere.example"])])

        async def run() -> None:
            async with Harness(workdir, config, listen=True) as h:
                assert (await asyncio.to_thread(send, port, mail(), "a@corp.example", ["x@partner.example"]))[0] == 250
                await h.deliver()
                [summary] = await h.queued()
                assert await h.states(summary.id) == {"x@partner.example": "deferred"}
                assert [e.kind for e in await h.events("route.none")] == ["route.none"]
                assert not usual.messages and not big.messages

        asyncio.run(run())
