"""A handed-off message's attempt starts after its client's next reply (core/intake/handoff.py).

The real gateway with its SMTP intake and running scheduler, a real SMTP sink, a real SMTP client
(aiosmtplib). ``START_WITHIN`` is made long here, so the order is the intake's doing: a session's first
message waits in the scheduler until the client has had its next reply (or has gone); a later message
of the same session starts at once; a client that stays silent has its message delivered after
``START_WITHIN``; a scheduler stopped meanwhile releases the waiting message, due again at once.

With two workers, a session that ends alone (``QUIT``, or gone) leaves its attempt waiting for the
worker to be quiet (``QuietStarts``): ``GRACE`` after its last client left, unless a client is back by
then (it then waits for that one to go), or at once when a second client connects; with one process
it starts at the ``221``.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiosmtplib
import pytest

from mailpipe.core import scheduler as scheduler_module
from mailpipe.core.intake import handoff
from mailpipe.core.workers import slot as slot_module
from mailpipe.core.workers.slot import WorkerSlot
from tests.peers.harness import Harness, simple_message, until
from tests.peers.sink import RecordingSink
from tests.smarthost.helpers import smarthost_config


def message(n: int) -> bytes:
    return simple_message("alice@example.org", [f"bob{n}@remote.test"], subject=f"handoff {n}")


async def client(h: Harness) -> aiosmtplib.SMTP:
    host, port = h.listen_address
    smtp = aiosmtplib.SMTP(hostname=host, port=port, start_tls=False, timeout=10)
    await smtp.connect()
    return smtp


async def sent(h: Harness, n: int, smtp: aiosmtplib.SMTP | None = None) -> aiosmtplib.SMTP:
    """Message ``n`` (to ``bob<n>@remote.test``) sent on ``smtp``, or on a new session; the session, still open."""
    smtp = smtp or await client(h)
    await smtp.sendmail("alice@example.org", [f"bob{n}@remote.test"], message(n))
    return smtp


@pytest.fixture
def sink():
    with RecordingSink("127.0.1.63") as s:
        yield s


def run(workdir: Path, sink: RecordingSink, scenario) -> None:
    config = smarthost_config(workdir, {"server": f"{sink.host}:{sink.port}", "tls": "none"})

    async def main() -> None:
        async with Harness(workdir, config, listen=True) as h:
            h._gw.scheduler.start()
            await scenario(h, h._gw.scheduler)

    asyncio.run(main())


def test_a_sessions_first_message_starts_after_the_next_reply_and_later_ones_at_once(workdir, sink, monkeypatch):
    monkeypatch.setattr(scheduler_module, "START_WITHIN", 30.0)

    async def scenario(h: Harness, scheduler) -> None:
        smtp = await sent(h, 1)
        assert len(scheduler._waiting) == 1 and not sink.messages, "started before the client's next command"
        await smtp.noop()  # the next reply: now it starts
        await until(lambda: len(sink.messages) == 1, 10, "the first message at the sink")
        assert not scheduler._waiting
        await sent(h, 2, smtp)
        assert not scheduler._waiting, "a later message of the session waited"
        await until(lambda: len(sink.messages) == 2, 10, "the second message at the sink")
        await smtp.quit()

        smtp = await sent(h, 3)  # a client that goes away without another command
        assert len(scheduler._waiting) == 1
        smtp.close()
        await until(lambda: len(sink.messages) == 3, 10, "the message of the client that went away")

    run(workdir, sink, scenario)
    assert sorted(m.rcpt_tos[0] for m in sink.messages) == ["bob1@remote.test", "bob2@remote.test",
                                                            "bob3@remote.test"]


def test_a_silent_client_has_its_message_delivered_after_start_within(workdir, sink, monkeypatch):
    monkeypatch.setattr(scheduler_module, "START_WITHIN", 0.2)

    async def scenario(h: Harness, scheduler) -> None:
        smtp = await client(h)
        await smtp.sendmail("alice@example.org", ["bob@remote.test"], message(1))
        await until(lambda: len(sink.messages) == 1, 10, "the message of a silent client")
        assert not scheduler._waiting
        await smtp.quit()

    run(workdir, sink, scenario)


def test_a_waiting_message_is_released_when_the_scheduler_stops(workdir, sink, monkeypatch):
    """Stopped while a message waits for its client's next reply: not started, its lease released, due now."""
    monkeypatch.setattr(scheduler_module, "START_WITHIN", 30.0)
    ids: list[str] = []

    async def scenario(h: Harness, scheduler) -> None:
        smtp = await client(h)
        await smtp.sendmail("alice@example.org", ["bob@remote.test"], message(1))
        assert len(scheduler._waiting) == 1
        ids.extend(scheduler._waiting)
        await scheduler.stop(5.0)
        assert not scheduler._waiting
        await smtp.noop()  # the reply comes after the stop: nothing starts
        assert not scheduler.inflight and not sink.messages
        assert (await h.states(ids[0])) == {"bob@remote.test": "pending"}
        now = time.time() + 1  # the queue releases at the wall clock's time (the harness's clock is manual)
        claimed = await h._gw.queue.claim_due(now, 10, "another-node", now + 60)
        assert [m.id for m in claimed] == ids, "the released message is not due at once"
        smtp.close()

    run(workdir, sink, scenario)


@pytest.fixture
def two_workers(monkeypatch):
    """This process is worker 1 of 2 (as a supervised ``pipeline serve`` worker would be)."""
    monkeypatch.setattr(slot_module, "_current", WorkerSlot(1, 2))
    monkeypatch.setattr(scheduler_module, "START_WITHIN", 30.0)


def quiet_waiting(h: Harness) -> int:
    return len(h._gw.intake.slots.quiet)


def test_a_lone_client_that_quits_and_comes_back_has_its_attempt_wait_until_it_goes(workdir, sink, two_workers,
                                                                                      monkeypatch):
    monkeypatch.setattr(handoff, "GRACE", 0.3)

    async def scenario(h: Harness, scheduler) -> None:
        smtp = await sent(h, 1)
        await smtp.quit()
        back = await client(h)  # the same client's next connection, within GRACE
        await back.noop()
        assert quiet_waiting(h) == 1 and len(scheduler._waiting) == 1
        await asyncio.sleep(2 * handoff.GRACE)  # the grace passes while the client is here: nothing starts
        assert quiet_waiting(h) == 1 and not sink.messages, "started while the client was connected"
        started = time.monotonic()
        await back.quit()
        await until(lambda: len(sink.messages) == 1, 10, "the message at the sink once the client went")
        assert time.monotonic() - started >= handoff.GRACE * 0.9, "started before the grace was over"
        assert quiet_waiting(h) == 0 and not scheduler._waiting

    run(workdir, sink, scenario)


def test_a_second_client_starts_the_waiting_attempts_at_once(workdir, sink, two_workers, monkeypatch):
    monkeypatch.setattr(handoff, "GRACE", 30.0)

    async def scenario(h: Harness, scheduler) -> None:
        smtp = await sent(h, 1)
        await smtp.quit()
        first = await client(h)
        await first.noop()
        assert quiet_waiting(h) == 1
        second = await client(h)  # two clients: the worker is not serving one client alone
        await second.noop()
        await until(lambda: len(sink.messages) == 1, 10, "the message at the sink")
        assert quiet_waiting(h) == 0
        await first.quit()
        await second.quit()

    run(workdir, sink, scenario)


def test_a_client_that_keeps_coming_back_has_at_most_max_waiting_attempts_wait(workdir, sink, two_workers,
                                                                                monkeypatch):
    """The worker is never quiet (its one client returns at once, as while the other worker restarts): once
    ``MAX_WAITING`` attempts wait, the next lone session's end starts them, not ``START_WITHIN``."""
    monkeypatch.setattr(handoff, "GRACE", 30.0)
    monkeypatch.setattr(handoff, "MAX_WAITING", 2)

    async def scenario(h: Harness, scheduler) -> None:
        for n in (1, 2):
            smtp = await sent(h, n)
            await smtp.quit()
            assert quiet_waiting(h) == n and not sink.messages
        smtp = await sent(h, 3)
        await smtp.quit()  # a third: the two waiting start, the third waits
        await until(lambda: len(sink.messages) == 2, 10, "the two waiting messages at the sink")
        assert quiet_waiting(h) == 1
        assert sorted(m.rcpt_tos[0] for m in sink.messages) == ["bob1@remote.test", "bob2@remote.test"]

    run(workdir, sink, scenario)


def test_a_lone_client_that_goes_away_has_its_attempt_started_after_the_grace(workdir, sink, two_workers,
                                                                             monkeypatch):
    monkeypatch.setattr(handoff, "GRACE", 0.05)

    async def scenario(h: Harness, scheduler) -> None:
        smtp = await sent(h, 1)
        smtp.close()  # gone without QUIT
        await until(lambda: len(sink.messages) == 1, 10, "the message at the sink")
        assert quiet_waiting(h) == 0 and not scheduler._waiting

    run(workdir, sink, scenario)


def test_with_one_process_a_lone_clients_quit_starts_its_attempt(workdir, sink, monkeypatch):
    """One process serves every connection: the attempt starts at the ``221`` (no waiting for quiet)."""
    monkeypatch.setattr(scheduler_module, "START_WITHIN", 30.0)
    monkeypatch.setattr(handoff, "GRACE", 30.0)

    async def scenario(h: Harness, scheduler) -> None:
        assert h._gw.intake.slots.quiet is None
        smtp = await sent(h, 1)
        await smtp.quit()
        await until(lambda: len(sink.messages) == 1, 10, "the message at the sink")

    run(workdir, sink, scenario)
