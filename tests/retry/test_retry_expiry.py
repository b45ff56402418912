"""Retry, backoff and expiry, with time driven through a ManualClock (no sleeps).

Delivery goes to a real SMTP server (aiosmtpd recording sink) through the
smarthost plugin; the sink answers 450 for a recipient until told otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from mailpipe.plugins.retry import RetryOptions
from tests.peers.harness import Harness
from tests.peers.sink import RecordingSink
from tests.retry.helpers import reports, retry_config

T0 = 1_900_000_000.0
M, H, D = 60.0, 3600.0, 86400.0
BUSY = "450 4.2.0 mailbox busy, try later"


@pytest.fixture
def sink() -> Iterator[RecordingSink]:
    with RecordingSink("127.0.0.1") as s:
        yield s


@contextlib.asynccontextmanager
async def bob_deferred(workdir: Path, sink: RecordingSink, retry: dict[str, Any],
                       *others: str) -> AsyncIterator[tuple[Harness, str]]:
    """A gateway retrying with ``retry``, on a manual clock at ``T0``; bob@example.net's mailbox answers 450.

    Queues one message to bob (and ``others``) and makes one scheduler pass; yields the harness
    and the message id.
    """
    async with Harness(workdir, retry_config(workdir, sink, retry=retry), start=T0) as h:
        sink.behaviour.rcpt["bob@example.net"] = BUSY
        mid = await h.submit("alice@example.org", ["bob@example.net", *others])
        await h.tick()
        yield h, mid


def test_fixed_interval_waits_every_then_delivers(workdir: Path, sink: RecordingSink) -> None:
    """retry.every: a deferred recipient is not tried before the interval, and is tried when it has passed."""
    async def scenario() -> None:
        async with bob_deferred(workdir, sink, {"every": "15m", "expire_after": "2d"}) as (h, mid):
            assert await h.states(mid) == {"bob@example.net": "deferred"}
            assert await h.next_attempt(mid, "bob@example.net") == T0 + 15 * M

            h.clock.advance(14 * M)
            assert await h.tick() == 0, "tried before retry.every had passed"
            sink.behaviour.rcpt.clear()
            h.clock.advance(1 * M)
            assert await h.tick() == 1
            assert await h.states(mid) == {"bob@example.net": "delivered"}
            assert [m.rcpt_tos for m in sink.messages] == [["bob@example.net"]] and not reports(sink)
            log = await h.attempts(message=mid)
            assert [(a.time, a.outcome, a.action, a.code, a.enhanced) for a in log] == [
                (T0, "temporary", "deferred", 450, "4.2.0"), (T0 + 15 * M, "delivered", "delivered", 250, "2.0.0")]

    asyncio.run(scenario())


def test_backoff_grows_between_min_and_max(workdir: Path, sink: RecordingSink) -> None:
    """retry.backoff: 5m, 10m, 20m, 40m, then capped at max 1h, like Postfix's minimal/maximal backoff."""
    config = retry_config(workdir, sink, retry={"every": "5m", "expire_after": "1d",
                                                "backoff": {"max": "1h", "factor": 2}})

    async def scenario() -> None:
        async with Harness(workdir, config, start=T0) as h:
            sink.behaviour.rcpt["bob@example.net"] = BUSY
            mid = await h.submit("alice@example.org", ["bob@example.net"])
            waits = []
            for _ in range(6):
                assert await h.tick() == 1
                due = await h.next_attempt(mid, "bob@example.net")
                waits.append(due - h.clock.now())
                h.clock.set(due)
            assert waits == [5 * M, 10 * M, 20 * M, 40 * M, 60 * M, 60 * M]

    asyncio.run(scenario())


def test_backoff_options_are_validated() -> None:
    """backoff without options doubles up to 1h; a max below every and warn_after past expiry are refused."""
    assert RetryOptions.model_validate({"every": "15m", "backoff": {}}).interval(3) == 3600.0
    with pytest.raises(ValueError, match="backoff.max"):
        RetryOptions.model_validate({"every": "1h", "backoff": {"max": "30m"}})
    with pytest.raises(ValueError, match="warn_after"):
        RetryOptions.model_validate({"expire_after": "1h", "warn_after": "2h"})


def test_expiry_bounces_to_sender_and_last_retry_is_at_the_deadline(workdir: Path, sink: RecordingSink,
                                                                     ) -> None:
    """retry.expire_after: retries stop at the deadline; the recipient expires; the sender gets a report."""
    async def scenario() -> None:
        # carol delivered, bob deferred
        async with bob_deferred(workdir, sink, {"every": "50m", "expire_after": "2h"}, "carol@example.net") as (h, mid):
            times = [h.clock.now()]
            for _ in range(10):  # bounded: the deadline is four attempts away
                if (await h.states(mid))["bob@example.net"] != "deferred":
                    break
                h.clock.set(await h.next_attempt(mid, "bob@example.net"))
                times.append(h.clock.now())
                await h.tick()
            assert [t - T0 for t in times] == [0, 50 * M, 100 * M, 120 * M], "last retry not at the deadline"
            assert await h.states(mid) == {"bob@example.net": "expired", "carol@example.net": "delivered"}
            assert await h.queued() == [], "an expired message must leave the queue"
            [dsn] = reports(sink)
            assert dsn.rcpt_tos == ["alice@example.org"]
            assert b"Action: failed" in dsn.data and b"Final-Recipient: rfc822; bob@example.net" in dsn.data
            assert b"carol@example.net" not in dsn.data.split(b"Content-Type: text/rfc822-headers")[0]
            [event] = await h.events("message.expired")
            assert mid in event.text and "bob@example.net" in event.text and "2 hours" in event.text

    asyncio.run(scenario())


def test_restart_changes_no_schedule(workdir: Path, sink: RecordingSink) -> None:
    """Next attempts and the arrival time are stored: a new gateway process keeps the same plan."""
    async def scenario() -> None:
        async with bob_deferred(workdir, sink, {"every": "1h", "expire_after": "3h"}) as (h, mid):
            path = h.config_path

        async with Harness(workdir, path, start=T0 + 59 * M) as h:  # "restarted"
            assert await h.tick() == 0
            assert await h.next_attempt(mid, "bob@example.net") == T0 + 1 * H
            h.clock.set(T0 + 3 * H)  # long past two retries: one attempt, at the deadline -> expired
            assert await h.tick() == 2  # the message, then the report it produced
            assert await h.states(mid) == {"bob@example.net": "expired"}

    asyncio.run(scenario())


def test_held_past_expiry_expires_at_next_attempt(workdir: Path, sink: RecordingSink) -> None:
    """A recipient nobody attempted past the deadline (held) expires when it is next attempted."""
    async def scenario() -> None:
        async with bob_deferred(workdir, sink, {"every": "1h", "expire_after": "2h"}) as (h, mid):
            assert await h.hold(mid) == 1
            h.clock.advance(1 * D)
            assert await h.tick() == 0
            assert await h.states(mid) == {"bob@example.net": "held"}
            assert await h.release(mid) == 1
            await h.tick()
            assert await h.states(mid) == {"bob@example.net": "expired"}
            [dsn] = reports(sink)
            assert dsn.rcpt_tos == ["alice@example.org"] and b"Action: failed" in dsn.data

    asyncio.run(scenario())
