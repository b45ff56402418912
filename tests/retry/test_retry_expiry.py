"""Retry, backoff and expiry, with time driven through a ManualClock (no sleeps).

Delivery goes to a real SMTP server (aiosmtpd recording sink) through the
smarthost plugin; the sink answers 450 for a recipient until told otherwise.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from mailpipe.core.clock import ManualClock
from mailpipe.plugins.retry import RetryOptions
from tests.peers.sink import RecordingSink
from tests.retry.helpers import next_attempt, open_gateway, queue_message, reports, states, write_config

T0 = 1_900_000_000.0
M, H, D = 60.0, 3600.0, 86400.0
BUSY = "450 4.2.0 mailbox busy, try later"


@pytest.fixture
def sink():
    with RecordingSink("127.0.0.1") as s:
        yield s


def test_fixed_interval_waits_every_then_delivers(workdir: Path, sink: RecordingSink) -> None:
    """retry.every: a deferred recipient is not tried before the interval, and is tried when it has passed."""
    config = write_config(workdir, sink, retry={"every": "15m", "expire_after": "2d"})

    async def scenario() -> None:
        clock = ManualClock(T0)
        gw = await open_gateway(config, clock)
        try:
            sink.behaviour.rcpt["bob@example.net"] = BUSY
            msg = await queue_message(gw, "alice@example.org", ["bob@example.net"])
            await gw.scheduler.tick()
            assert await states(gw, msg.id) == {"bob@example.net": "deferred"}
            assert await next_attempt(gw, msg.id, "bob@example.net") == T0 + 15 * M

            clock.advance(14 * M)
            assert await gw.scheduler.tick() == 0, "tried before retry.every had passed"
            sink.behaviour.rcpt.clear()
            clock.advance(1 * M)
            assert await gw.scheduler.tick() == 1
            assert await states(gw, msg.id) == {"bob@example.net": "delivered"}
            assert len(sink.messages) == 1 and not reports(sink)
            log = await gw.queue.attempts(message=msg.id)
            assert [(a.time, a.outcome, a.action) for a in log] == [
                (T0, "temporary", "deferred"), (T0 + 15 * M, "delivered", "delivered")]
        finally:
            await gw.close()

    asyncio.run(scenario())


def test_backoff_grows_between_min_and_max(workdir: Path, sink: RecordingSink) -> None:
    """retry.backoff: 5m, 10m, 20m, 40m, then capped at max 1h, like Postfix's minimal/maximal backoff."""
    config = write_config(workdir, sink, retry={"every": "5m", "expire_after": "1d",
                                                "backoff": {"max": "1h", "factor": 2}})

    async def scenario() -> None:
        clock = ManualClock(T0)
        gw = await open_gateway(config, clock)
        try:
            sink.behaviour.rcpt["bob@example.net"] = BUSY
            msg = await queue_message(gw, "alice@example.org", ["bob@example.net"])
            waits = []
            for _ in range(6):
                assert await gw.scheduler.tick() == 1
                due = await next_attempt(gw, msg.id, "bob@example.net")
                waits.append(due - clock.now())
                clock.set(due)
            assert waits == [5 * M, 10 * M, 20 * M, 40 * M, 60 * M, 60 * M]
        finally:
            await gw.close()

    asyncio.run(scenario())


def test_backoff_options_are_validated() -> None:
    assert RetryOptions.model_validate({"every": "15m", "backoff": {}}).interval(3) == 3600.0
    with pytest.raises(ValueError, match="backoff.max"):
        RetryOptions.model_validate({"every": "1h", "backoff": {"max": "30m"}})
    with pytest.raises(ValueError, match="warn_after"):
        RetryOptions.model_validate({"expire_after": "1h", "warn_after": "2h"})


def test_expiry_bounces_to_sender_and_last_retry_is_at_the_deadline(workdir: Path, sink: RecordingSink,
                                                                     ) -> None:
    """retry.expire_after: retries stop at the deadline; the recipient expires; the sender gets a report."""
    config = write_config(workdir, sink, retry={"every": "50m", "expire_after": "2h"})

    async def scenario() -> None:
        clock = ManualClock(T0)
        gw = await open_gateway(config, clock)
        try:
            sink.behaviour.rcpt["bob@example.net"] = BUSY
            msg = await queue_message(gw, "alice@example.org", ["bob@example.net", "carol@example.net"])
            await gw.scheduler.tick()  # carol delivered, bob deferred
            times = [clock.now()]
            while (await states(gw, msg.id))["bob@example.net"] == "deferred":
                clock.set(await next_attempt(gw, msg.id, "bob@example.net"))
                times.append(clock.now())
                await gw.scheduler.tick()
            assert [t - T0 for t in times] == [0, 50 * M, 100 * M, 120 * M], "last retry not at the deadline"
            assert await states(gw, msg.id) == {"bob@example.net": "expired",
                                                "carol@example.net": "delivered"}
            assert (await gw.queue.list()) == [], "an expired message must leave the queue"
            [dsn] = reports(sink)
            assert dsn.rcpt_tos == ["alice@example.org"]
            assert b"Action: failed" in dsn.data and b"Final-Recipient: rfc822; bob@example.net" in dsn.data
            assert b"carol@example.net" not in dsn.data.split(b"Content-Type: text/rfc822-headers")[0]
            [event] = await gw.queue.events(kind="message.expired")
            assert msg.id in event.text and "bob@example.net" in event.text and "2 hours" in event.text
        finally:
            await gw.close()

    asyncio.run(scenario())


def test_restart_changes_no_schedule(workdir: Path, sink: RecordingSink) -> None:
    """Next attempts and the arrival time are stored: a new gateway process keeps the same plan."""
    config = write_config(workdir, sink, retry={"every": "1h", "expire_after": "3h"})

    async def scenario() -> None:
        clock = ManualClock(T0)
        gw = await open_gateway(config, clock)
        sink.behaviour.rcpt["bob@example.net"] = BUSY
        msg = await queue_message(gw, "alice@example.org", ["bob@example.net"])
        await gw.scheduler.tick()
        await gw.close()

        clock.advance(59 * M)
        gw = await open_gateway(config, clock)  # "restarted"
        try:
            assert await gw.scheduler.tick() == 0
            assert await next_attempt(gw, msg.id, "bob@example.net") == T0 + 1 * H
            clock.set(T0 + 3 * H)  # long past two retries: one attempt, at the deadline -> expired
            assert await gw.scheduler.tick() == 2  # the message, then the report it produced
            assert await states(gw, msg.id) == {"bob@example.net": "expired"}
        finally:
            await gw.close()

    asyncio.run(scenario())


def test_held_past_expiry_expires_at_next_attempt(workdir: Path, sink: RecordingSink) -> None:
    """A recipient nobody attempted past the deadline (held) expires when it is next attempted."""
    config = write_config(workdir, sink, retry={"every": "1h", "expire_after": "2h"})

    async def scenario() -> None:
        clock = ManualClock(T0)
        gw = await open_gateway(config, clock)
        try:
            sink.behaviour.rcpt["bob@example.net"] = BUSY
            msg = await queue_message(gw, "alice@example.org", ["bob@example.net"])
            await gw.scheduler.tick()
            await gw.queue.hold([msg.id])
            clock.advance(1 * D)
            assert await gw.scheduler.tick() == 0
            assert await states(gw, msg.id) == {"bob@example.net": "held"}
            await gw.queue.release_hold([msg.id], clock.now())
            await gw.scheduler.tick()
            assert await states(gw, msg.id) == {"bob@example.net": "expired"}
            assert len(reports(sink)) == 1
        finally:
            await gw.close()

    asyncio.run(scenario())
