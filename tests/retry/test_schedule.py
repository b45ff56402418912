"""delivery.send_immediately: false with delivery.schedule windows; `pipeline queue retry` forces a run."""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest

from tests.peers.harness import Harness
from tests.peers.mailpipe import MailpipeProcess
from tests.peers.sink import RecordingSink
from tests.retry.helpers import retry_config

M, H = 60.0, 3600.0
# 10:30 local time: the cron expressions are read in the machine's time zone.
T0 = datetime(2030, 6, 3, 10, 30).timestamp()
EVERY_2H = {"send_immediately": False, "schedule": ["0 */2 * * *"], "concurrency": 2}


@pytest.fixture
def sink() -> Iterator[RecordingSink]:
    with RecordingSink("127.0.0.1") as s:
        yield s


def test_window_holds_mail_then_releases_it(workdir: Path, sink: RecordingSink) -> None:
    """Mail waits outside the window; at 12:00 one run drains all of it, more than `concurrency`."""
    config = retry_config(workdir, sink, delivery=EVERY_2H)

    async def scenario() -> None:
        async with Harness(workdir, config, start=T0) as h:
            ids = [await h.submit("alice@example.org", [f"r{i}@example.net"]) for i in range(5)]
            assert h.next_window() == T0 + 90 * M
            assert await h.tick() == 0
            h.clock.set(T0 + 89 * M)  # 11:59
            assert await h.tick() == 0
            assert sink.messages == []
            h.clock.set(T0 + 90 * M + 20)  # 12:00:20, inside the window's minute
            assert await h.tick() == 5
            assert sorted(m.rcpt_tos[0] for m in sink.messages) == [f"r{i}@example.net" for i in range(5)]
            for n, i in enumerate(ids):
                assert await h.states(i) == {f"r{n}@example.net": "delivered"}

    asyncio.run(scenario())


def test_mail_deferred_in_a_run_waits_for_the_next_window(workdir: Path, sink: RecordingSink) -> None:
    """A retry due at 12:15 is not attempted at 12:15 (closed) but in the 14:00 window."""
    config = retry_config(workdir, sink, delivery=EVERY_2H, retry={"every": "15m", "expire_after": "2d"})
    sink.behaviour.rcpt["bob@example.net"] = "450 4.2.0 busy"

    async def scenario() -> None:
        async with Harness(workdir, config, start=T0 + 90 * M) as h:  # 12:00
            mid = await h.submit("alice@example.org", ["bob@example.net"])
            assert await h.tick() == 1
            assert await h.next_attempt(mid, "bob@example.net") == h.clock.now() + 15 * M
            h.clock.advance(15 * M)
            assert await h.tick() == 0, "attempted outside a window"
            sink.behaviour.rcpt.clear()
            h.clock.set(T0 + 210 * M)  # 14:00
            assert await h.tick() == 1
            assert await h.states(mid) == {"bob@example.net": "delivered"}

    asyncio.run(scenario())


def test_window_of_whole_hours_sends_as_mail_comes(workdir: Path, sink: RecordingSink) -> None:
    """`* 22-23,0-5 * * *` is a night window: any minute in it starts runs; daytime holds mail."""
    night = {"send_immediately": False, "schedule": ["* 22-23,0-5 * * *"]}
    config = retry_config(workdir, sink, delivery=night)

    async def scenario() -> None:
        async with Harness(workdir, config, start=T0) as h:
            await h.submit("alice@example.org", ["a@example.net"])
            assert await h.tick() == 0
            h.clock.set(datetime(2030, 6, 3, 23, 17, 5).timestamp())
            assert await h.tick() == 1
            await h.submit("alice@example.org", ["b@example.net"])
            h.clock.advance(3 * H)  # 02:17, still night
            assert await h.tick() == 1
            await h.submit("alice@example.org", ["c@example.net"])
            h.clock.advance(4 * H)  # 06:17, day
            assert await h.tick() == 0
            assert [m.rcpt_tos for m in sink.messages] == [["a@example.net"], ["b@example.net"]]

    asyncio.run(scenario())


def test_forced_run_outside_the_window(workdir: Path, sink: RecordingSink) -> None:
    """A forced run — what `pipeline queue retry` sends a running server — starts a run at once."""
    config = retry_config(workdir, sink, delivery=EVERY_2H)

    async def scenario() -> None:
        async with Harness(workdir, config, start=T0) as h:
            for i in range(3):
                await h.submit("alice@example.org", [f"r{i}@example.net"])
            assert await h.tick() == 0
            h.force_run()
            assert await h.tick() == 3  # drains everything, beyond concurrency 2
            await h.submit("alice@example.org", ["late@example.net"])
            assert await h.tick() == 0, "the forced run is over; the window is still closed"
            assert "late@example.net" not in [r for m in sink.messages for r in m.rcpt_tos]

    asyncio.run(scenario())


def test_pipeline_queue_retry_forces_a_running_server(mailpipe_factory: Callable[..., MailpipeProcess],
                                                        sink: RecordingSink) -> None:
    """A real `pipeline serve` with a window far away holds mail until `pipeline queue retry --all`."""
    mp = mailpipe_factory({
        "hostname": "gw.retry.test",
        "delivery": {"send_immediately": False, "schedule": ["0 0 1 1 *"]},
        "chain": [{"smarthost": {"server": "127.0.0.1", "port": sink.port, "tls": "none"}},
                  {"retry": {"every": "15m"}}],
    })
    with mp:
        host, port = mp.address
        with smtplib.SMTP(host, port, timeout=10) as client:
            client.sendmail("alice@example.org", ["bob@example.net"], b"Subject: held\r\n\r\nHi.\r\n")
        [queued] = mp.cli_json("queue", "list")
        assert queued["recipients"] == {"pending": 1}
        out = mp.cli_json("queue", "retry", "--all")
        assert out["server_woken"] is True
        [got] = sink.wait_for(1)
        assert got.rcpt_tos == ["bob@example.net"]
