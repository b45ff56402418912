"""The clamav plugin against a real private clamd: clean, infected, zip-wrapped, zip bomb, down, hanging."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from tests.peers.clamd import EICAR, SIGNATURE, ClamdPeer
from tests.peers.harness import Harness
from tests.peers.net import free_port
from tests.peers.sink import RecordingSink

from .helpers import OtherClient, base_config, eicar_mail, mail, send, smarthost, zip_bomb, zipped

FOUND = f"{SIGNATURE}.UNOFFICIAL"


def _run(workdir: Path, clamav: dict[str, Any], scenario: Any) -> RecordingSink:
    port = free_port()
    with RecordingSink() as sink:
        config = base_config(workdir, port, [{"clamav": clamav}, smarthost(sink.port)])

        async def run() -> None:
            async with Harness(workdir, config, listen=True) as h:
                await scenario(h, port)
                await h.deliver()

        asyncio.run(run())
    return sink


@pytest.mark.parametrize("transport", ["socket", "address"])
def test_clean_infected_zipped_and_bomb(workdir: Path, clamd: ClamdPeer, transport: str) -> None:
    where = {"socket": clamd.socket_path} if transport == "socket" else {"address": clamd.address}

    async def scenario(h: Harness, port: int) -> None:
        assert (await asyncio.to_thread(send, port, mail(subject="clean")))[0] == 250
        refused = await asyncio.to_thread(send, port, eicar_mail())
        assert refused == (554, f"5.7.0 message refused: virus found ({FOUND})")
        zipped_eicar = mail(subject="zipped", attachments=[("invoice.zip", zipped("invoice.com", EICAR),
                                                              "application/zip")])
        assert (await asyncio.to_thread(send, port, zipped_eicar))[0] == 554
        started = time.monotonic()
        bomb = mail(subject="bomb", attachments=[("bomb.zip", zip_bomb(), "application/zip")])
        code, _ = await asyncio.to_thread(send, port, bomb)
        assert code in (250, 554)  # clamd's own limits decide; what matters is that it answered in time
        assert time.monotonic() - started < 15
        infected = await h.events("clamav.infected")
        assert len(infected) == 2 and all(e.data["virus"] == FOUND for e in infected)

    sink = _run(workdir, {**where, "timeout": "10s"}, scenario)
    assert b"\r\nSubject: clean\r\n" in b"".join(m.data for m in sink.messages)


def test_quarantine_holds_and_flags(workdir: Path, clamd: ClamdPeer) -> None:
    async def scenario(h: Harness, port: int) -> None:
        assert (await asyncio.to_thread(send, port, eicar_mail()))[0] == 250
        [held] = await h.queued(state="held")
        attributes = await h.attributes(held.id)
        assert attributes["quarantine"] == {"virus": FOUND, "by": "clamav"}
        assert attributes["held"] == f"quarantined: virus {FOUND} found by clamav"
        assert [e.data["action"] for e in await h.events("clamav.infected")] == ["quarantine"]

    sink = _run(workdir, {"address": clamd.address, "action": "quarantine"}, scenario)
    assert sink.messages == []  # held: nothing leaves until an administrator decides


def test_clamd_down(workdir: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Unreachable: 451 4.7.0 (tempfail) or through with a header (accept); one event per outage."""
    dead = free_port()

    async def tempfail(h: Harness, port: int) -> None:
        for _ in range(2):
            assert await asyncio.to_thread(send, port, mail()) == (451, "4.7.0 virus scanner unavailable, try again "
                                                                   "later")
        assert len(await h.events("clamav.unavailable")) == 1
        with ClamdPeer(tmp_path_factory.mktemp("clamd-late"), port=dead):  # clamd comes (back)
            assert (await asyncio.to_thread(send, port, mail()))[0] == 250
        assert len(await h.events("clamav.available")) == 1

    assert len(_run(workdir / "tempfail", {"address": f"127.0.0.1:{dead}"}, tempfail).messages) == 1

    async def accept(h: Harness, port: int) -> None:
        assert (await asyncio.to_thread(send, port, mail()))[0] == 250

    sink = _run(workdir / "accept", {"socket": str(workdir / "no-such.sock"), "on_error": "accept"}, accept)
    [message] = sink.messages
    assert b"\r\nX-Virus-Scan: not scanned by gw.policy.test: cannot reach clamd at " in message.data


def test_clamd_hanging(workdir: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """A clamd that accepts and never answers costs the client the time-out, and nobody else anything."""
    with ClamdPeer(tmp_path_factory.mktemp("clamd-hang")) as peer:

        async def scenario(h: Harness, port: int) -> None:
            peer.freeze()
            try:
                other = OtherClient(port)
                started = time.monotonic()
                other.start()
                reply = await asyncio.to_thread(send, port, eicar_mail())
                took = time.monotonic() - started
                await asyncio.to_thread(other.join, 30)
            finally:
                peer.thaw()
            assert reply == (451, "4.7.0 virus scanner unavailable, try again later")
            assert 2 <= took < 10
            assert other.took is not None and other.took < 2
            [event] = await h.events("clamav.unavailable")
            assert "did not answer within 2s" in event.text
            assert (await asyncio.to_thread(send, port, eicar_mail()))[0] == 554  # thawed: scanning again

        _run(workdir, {"address": peer.address, "timeout": "2s"}, scenario)
