"""The queue conformance suite: the promises of ``mailpipe.core.queue``, run against any backend.

A queue backend's own test module subclasses ``QueueConformance`` (name the subclass
``Test...`` so pytest collects it) and overrides the ``make_queue`` fixture::

    import pytest
    from mailpipe.core.testing.queue import QueueConformance

    class TestMyQueue(QueueConformance):
        retention = 7 * 86400.0          # what prune keeps, for the backends make_queue makes
        shares_store = False             # True if two instances may be open on one store at once

        @pytest.fixture
        def make_queue(self, tmp_path):
            return lambda: MyQueue(tmp_path / "queue")

        @pytest.fixture
        def make_full_queue(self, small_disk):  # optional; small_disk: your fixture, a few MB of room
            return lambda: MyQueue(small_disk / "queue")

``make_queue`` returns a factory: each call makes a new, unopened backend on one fresh
store; calling it again "reopens" the same store (durability). ``make_full_queue`` is the
same on storage that fills up after a few megabytes; the default skips the storage-full
test, and a backend that cannot fill its storage may skip with a reason of its own.

The suite uses only the public interface, with explicit times: ``T0`` lies in the wall
clock's future and ``PAST`` in its past. ``release`` and ``recover`` take no time (a
backend reads the wall clock there), so "due at once" after them means due at ``T0``,
and a lease that "ran out" before ``recover`` ends in the ``PAST``.
"""

from __future__ import annotations

import asyncio

import pytest

from mailpipe.core.events import Event
from mailpipe.core.ids import new_queue_id
from mailpipe.core.message import Message, RecipientState, SessionInfo
from mailpipe.core.queue import DeliveryQueue, QueueBackend, QueueError, QueueFull

from .queue_helpers import (
    BOB,
    CAROL,
    DAVE,
    FILL_BODY,
    FILL_LIMIT,
    OWNER_A,
    OWNER_B,
    OWNER_C,
    PAST,
    SENDER,
    T0,
    QueueFactory,
    attempted_once,
    claim_one,
    due,
    new_message,
    opened,
    owner,
    scenario,
    shown,
    states,
    stored,
    update,
)

__all__ = ["QueueConformance", "QueueFactory", "new_message", "scenario", "update"]


class QueueConformance:
    """The queue's promises as pytest tests; subclass it in a backend's test module.

    Override ``make_queue`` (required), ``make_full_queue`` (to test full storage), and the
    class attributes ``retention`` (seconds of history ``prune`` keeps) and ``shares_store``.
    """

    retention: float = 30 * 86400.0
    shares_store: bool = False

    @pytest.fixture
    def make_queue(self) -> QueueFactory:
        """Override: a factory of unopened backends on one fresh store (see the module docstring)."""
        raise NotImplementedError(f"{type(self).__name__} must override the make_queue fixture")

    @pytest.fixture
    def make_full_queue(self) -> QueueFactory:
        """Override: like ``make_queue``, on storage that is full after a few megabytes."""
        pytest.skip(f"{type(self).__name__} cannot make its storage full")

    # -- store ----------------------------------------------------------------------------------

    @scenario
    async def test_stored_message_survives_reopening(self, make_queue: QueueFactory) -> None:
        """Once ``store`` returned, the message, its recipients (pending, due at arrival) and body are kept."""
        session = SessionInfo("192.0.2.7", helo="client.example.org", tls=True, may_relay=True)
        message, data = new_message(T0, [BOB, CAROL], session=session, mail_options=["BODY=8BITMIME"],
                                    attributes={"origin": "conformance"})
        async with opened(make_queue) as queue:
            assert await queue.next_due() is None
            await queue.store(message, data)
        async with opened(make_queue) as queue:
            detail = await shown(queue, message.id)
            got = detail.message
            assert (got.id, got.sender, got.created, got.size) == (message.id, SENDER, T0, len(data))
            assert got.mail_options == ["BODY=8BITMIME"]
            assert got.attributes == {"origin": "conformance"}
            assert [(r.address, r.state, r.attempts) for r in got.recipients] == [
                (BOB, RecipientState.PENDING, 0), (CAROL, RecipientState.PENDING, 0)]
            assert detail.attempts == []
            assert detail.client.get("peer") == "192.0.2.7"
            assert await queue.read_body(message.id) == data
            assert [s.id for s in await queue.list()] == [message.id]
            assert await queue.next_due() == T0

    # -- claim, leases --------------------------------------------------------------------------

    @scenario
    async def test_claim_hands_out_only_due_recipients_once_per_lease(self, make_queue: QueueFactory) -> None:
        """A claim hands out what is due at its time, and not again while the lease holds (to anyone)."""
        async with opened(make_queue) as queue:
            first = await stored(queue, T0, [BOB, CAROL])
            later = await stored(queue, T0 + 100, [DAVE])
            assert await queue.claim_due(T0 - 1, 10, OWNER_A, T0 + 299) == []
            claimed = await queue.claim_due(T0, 10, OWNER_A, T0 + 300)
            assert due(claimed) == {first.id: [BOB, CAROL]}
            assert all(r.state is RecipientState.PENDING for r in claimed[0].recipients)
            assert await queue.claim_due(T0 + 50, 10, OWNER_A, T0 + 350) == []
            assert await queue.claim_due(T0 + 50, 10, OWNER_B, T0 + 350) == []
            assert due(await queue.claim_due(T0 + 100, 10, OWNER_B, T0 + 400)) == {later.id: [DAVE]}

    @scenario
    async def test_claim_respects_its_limit(self, make_queue: QueueFactory) -> None:
        """At most ``limit`` messages per claim; the next claim hands out the others."""
        async with opened(make_queue) as queue:
            ids = {(await stored(queue, T0 + n, [BOB])).id for n in range(5)}
            first = await queue.claim_due(T0 + 10, 2, OWNER_A, T0 + 300)
            rest = await queue.claim_due(T0 + 10, 10, OWNER_A, T0 + 300)
            assert len(first) == 2 and len(rest) == 3
            assert {m.id for m in first} | {m.id for m in rest} == ids

    @scenario
    async def test_claim_carries_only_the_due_recipients(self, make_queue: QueueFactory) -> None:
        """A message comes with its due recipients only: not those deferred to later, nor ended ones."""
        async with opened(make_queue) as queue:
            await attempted_once(queue, [BOB, CAROL, DAVE], {BOB: (RecipientState.DEFERRED, T0 + 1000),
                                                             CAROL: (RecipientState.DEFERRED, T0 + 100),
                                                             DAVE: RecipientState.DELIVERED})
            [again] = await queue.claim_due(T0 + 500, 10, OWNER_A, T0 + 800)
            assert [(r.address, r.state, r.attempts) for r in again.recipients] == [
                (CAROL, RecipientState.DEFERRED, 1)]

    @scenario
    async def test_small_and_large_bodies_come_with_the_claim_or_on_demand(self, make_queue: QueueFactory) -> None:
        """``await message.body()`` of a claimed message gives the stored bytes, small or large."""
        async with opened(make_queue) as queue:
            small, small_data = new_message(T0, [BOB], size=1000)
            large, large_data = new_message(T0, [BOB], size=600 * 1024)
            await queue.store(small, small_data)
            await queue.store(large, large_data)
            claimed = {m.id: m for m in await queue.claim_due(T0, 10, OWNER_A, T0 + 300)}
            assert await claimed[small.id].body() == small_data
            assert await claimed[large.id].body() == large_data
            assert await queue.read_body(large.id) == large_data

    @scenario
    async def test_a_lease_that_ran_out_goes_to_another_owner(self, make_queue: QueueFactory) -> None:
        """An owner that never records nor releases (it hung or died) loses its claim when the lease runs out."""
        async with opened(make_queue) as queue:
            message = await stored(queue, T0, [BOB, CAROL])
            await claim_one(queue, message.id, T0, OWNER_A, T0 + 300)
            assert await queue.claim_due(T0 + 299, 10, OWNER_B, T0 + 600) == []
            assert due(await queue.claim_due(T0 + 301, 10, OWNER_B, T0 + 600)) == {message.id: [BOB, CAROL]}
            await queue.release(message.id, OWNER_A)  # too late: B's lease holds
            assert await queue.claim_due(T0 + 302, 10, OWNER_C, T0 + 600) == []

    @scenario
    async def test_renew_keeps_a_lease(self, make_queue: QueueFactory) -> None:
        """``renew`` extends the owner's lease (and only the owner's); a release after it still frees the claim."""
        async with opened(make_queue) as queue:
            if type(queue).renew is DeliveryQueue.renew:
                pytest.skip("renew is not implemented: leases are long enough for any delivery")
            kept = await stored(queue, T0, [BOB])
            other = await stored(queue, T0, [CAROL])
            claimed = await queue.claim_due(T0, 10, OWNER_A, T0 + 60)
            assert set(due(claimed)) == {kept.id, other.id}
            await queue.renew(OWNER_A, [kept.id], T0 + 600)
            await queue.renew(OWNER_B, [other.id], T0 + 600)  # not B's lease: nothing happens
            [taken] = await queue.claim_due(T0 + 120, 10, OWNER_B, T0 + 180)
            assert due([taken]) == {other.id: [CAROL]}, "the lease that was not renewed ran out"
            await queue.record(taken, [update(taken, CAROL, RecipientState.DELIVERED, T0 + 121)], T0 + 121)
            await queue.release(other.id, OWNER_B)
            assert await queue.claim_due(T0 + 130, 10, OWNER_A, T0 + 190) == []
            await queue.renew(OWNER_A, [kept.id], T0 + 900)
            assert await queue.claim_due(T0 + 601, 10, OWNER_B, T0 + 700) == []
            await queue.release(kept.id, OWNER_A)
            assert due(await queue.claim_due(T0 + 602, 10, OWNER_B, T0 + 900)) == {kept.id: [BOB]}

    @scenario
    async def test_no_message_is_handed_to_two_owners(self, make_queue: QueueFactory) -> None:
        """Concurrent claims by two owners (on two instances if the store is shared) are disjoint."""
        async with opened(make_queue) as first:
            ids = sorted([(await stored(first, T0 + n / 100, [BOB])).id for n in range(60)])
            if self.shares_store:
                async with opened(make_queue) as second:
                    got = await asyncio.gather(self._grab(first, OWNER_A), self._grab(second, OWNER_B))
            else:
                got = await asyncio.gather(self._grab(first, OWNER_A), self._grab(first, OWNER_B))
        taken_a, taken_b = got
        assert not set(taken_a) & set(taken_b), "a message was handed to both owners"
        assert sorted(taken_a + taken_b) == ids, "a message was handed out twice, or not at all"

    @staticmethod
    async def _grab(queue: QueueBackend, owner: str) -> list[str]:
        taken: list[str] = []
        for _ in range(40):
            batch = await queue.claim_due(T0 + 1, 3, owner, T0 + 300)
            if not batch:
                break
            taken += [m.id for m in batch]
        return taken

    @scenario
    async def test_release_makes_unrecorded_recipients_due_and_keeps_recorded_deferrals(
            self, make_queue: QueueFactory) -> None:
        """After ``release``: claimed, unrecorded recipients are due at once; a recorded deferral keeps its time."""
        async with opened(make_queue) as queue:
            message = await stored(queue, T0, [BOB, CAROL, DAVE])
            claimed = await claim_one(queue, message.id, T0, OWNER_A, T0 + 300)
            await queue.record(claimed, [update(claimed, BOB, RecipientState.DEFERRED, T0 + 5, T0 + 7200)], T0 + 5)
            await queue.release(message.id, OWNER_B)  # not B's lease: nothing happens
            assert await queue.claim_due(T0 + 10, 10, OWNER_B, T0 + 310) == []
            await queue.release(message.id, OWNER_A)
            assert (await queue.next_due() or T0 + 1) <= T0
            assert due(await queue.claim_due(T0, 10, OWNER_B, T0 + 300)) == {message.id: [CAROL, DAVE]}
            bob = next(r for r in (await shown(queue, message.id)).message.recipients if r.address == BOB)
            assert (bob.state, bob.next_attempt) == (RecipientState.DEFERRED, T0 + 7200)

    @scenario
    async def test_recover_takes_leases_that_ran_out_not_live_ones(self, make_queue: QueueFactory) -> None:
        """``recover`` frees the claims of an owner whose lease ran out; a live owner's lease holds."""
        async with opened(make_queue) as queue:
            orphan = await stored(queue, PAST, [BOB, CAROL])
            held = await stored(queue, PAST + 1, [DAVE])
            [claimed] = await queue.claim_due(PAST, 10, owner("gone"), PAST + 300)
            assert claimed.id == orphan.id
            await queue.record(claimed, [update(claimed, BOB, RecipientState.DELIVERED, PAST + 2)], PAST + 2)
            assert due(await queue.claim_due(PAST + 2, 10, OWNER_B, T0 + 86400)) == {held.id: [DAVE]}
        async with opened(make_queue) as queue:  # a new gateway starts
            assert await queue.recover(OWNER_C) == 1
            assert due(await queue.claim_due(T0, 10, OWNER_C, T0 + 300)) == {orphan.id: [CAROL]}

    # -- record -----------------------------------------------------------------------------------

    @scenario
    async def test_record_stores_states_log_lines_and_attributes(self, make_queue: QueueFactory) -> None:
        """Each update's state, next attempt, reply and log line are stored, with the message's attributes."""
        async with opened(make_queue) as queue:
            message = await stored(queue, T0, [BOB, CAROL], attributes={"origin": "conformance"})
            claimed = await claim_one(queue, message.id, T0)
            claimed.attributes["delay_warned"] = T0 + 1
            updates = [update(claimed, BOB, RecipientState.DELIVERED, T0 + 1),
                       update(claimed, CAROL, RecipientState.DEFERRED, T0 + 1, T0 + 3600)]
            await queue.record(claimed, updates, T0 + 1)
            await queue.release(message.id, OWNER_A)
            detail = await shown(queue, message.id)
            assert detail.message.attributes == {"origin": "conformance", "delay_warned": T0 + 1}
            assert [(r.address, r.state, r.attempts, r.last_reply) for r in detail.message.recipients] == [
                (u.recipient, u.state, 1, u.last_reply) for u in updates]
            carol = detail.message.recipients[1]
            assert carol.next_attempt == T0 + 3600
            assert detail.attempts == [u.attempt for u in updates]
            assert await queue.attempts(message=message.id) == [u.attempt for u in updates]
            [again] = await queue.claim_due(T0 + 3600, 10, OWNER_A, T0 + 3900)
            assert again.attributes == {"origin": "conformance", "delay_warned": T0 + 1}

    @scenario
    async def test_an_ended_recipient_is_never_changed_nor_handed_out_again(self, make_queue: QueueFactory) -> None:
        """Delivered (or failed) stays so, through later records, release, retry, hold and release."""
        async with opened(make_queue) as queue:
            message = await stored(queue, T0, [BOB, CAROL, DAVE])
            claimed = await claim_one(queue, message.id, T0)
            await queue.record(claimed, [update(claimed, BOB, RecipientState.DELIVERED, T0 + 1),
                                         update(claimed, CAROL, RecipientState.FAILED, T0 + 1),
                                         update(claimed, DAVE, RecipientState.DEFERRED, T0 + 1, T0 + 100)], T0 + 1)
            await queue.record(claimed, [update(claimed, BOB, RecipientState.DEFERRED, T0 + 2, T0 + 50),
                                         update(claimed, CAROL, RecipientState.DELIVERED, T0 + 2)], T0 + 2)
            await queue.release(message.id, OWNER_A)
            ended = {BOB: RecipientState.DELIVERED, CAROL: RecipientState.FAILED}
            assert await states(queue, message.id) == {**ended, DAVE: RecipientState.DEFERRED}
            assert due(await queue.claim_due(T0 + 200, 10, OWNER_A, T0 + 500)) == {message.id: [DAVE]}
            await queue.release(message.id, OWNER_A)
            assert await queue.retry_now(None, T0 + 210) > 0
            assert due(await queue.claim_due(T0 + 210, 10, OWNER_A, T0 + 500)) == {message.id: [DAVE]}
            await queue.release(message.id, OWNER_A)
            assert await queue.hold([message.id]) > 0
            assert await queue.release_hold([message.id], T0 + 220) > 0
            assert due(await queue.claim_due(T0 + 220, 10, OWNER_A, T0 + 500)) == {message.id: [DAVE]}
            assert {a: s for a, s in (await states(queue, message.id)).items() if a != DAVE} == ended

    @scenario
    async def test_record_is_all_or_nothing(self, make_queue: QueueFactory) -> None:
        """A report that cannot be stored (its id is taken) fails the whole record: no state, line or attribute."""
        async with opened(make_queue) as queue:
            message = await stored(queue, T0, [BOB], attributes={"origin": "conformance"})
            other, other_data = new_message(T0, [DAVE], sender="erin@example.org")
            await queue.store(other, other_data)
            claimed = await claim_one(queue, message.id, T0)
            claimed.attributes["delay_warned"] = T0 + 1
            report, report_data = new_message(T0 + 1, [SENDER], sender="")
            report.id = other.id  # collides with a stored message
            failure = [update(claimed, BOB, RecipientState.FAILED, T0 + 1)]
            with pytest.raises(QueueError):
                await queue.record(claimed, failure, T0 + 1, new_messages=[(report, report_data)])
            detail = await shown(queue, message.id)
            assert detail.attempts == [] and await queue.attempts(message=message.id) == []
            assert [(r.state, r.attempts) for r in detail.message.recipients] == [(RecipientState.PENDING, 0)]
            assert detail.message.attributes == {"origin": "conformance"}
            kept = await shown(queue, other.id)
            assert (kept.message.sender, [r.address for r in kept.message.recipients]) == ("erin@example.org", [DAVE])
            assert await queue.read_body(other.id) == other_data

            report.id = new_queue_id(T0 + 1)
            await queue.record(claimed, failure, T0 + 1, new_messages=[(report, report_data)])
            assert await states(queue, message.id) == {BOB: RecipientState.FAILED}
            assert (await shown(queue, message.id)).message.attributes["delay_warned"] == T0 + 1
            assert await states(queue, report.id) == {SENDER: RecipientState.PENDING}
            assert await queue.read_body(report.id) == report_data

    @scenario
    async def test_a_finished_message_loses_its_body_and_leaves_the_list(self, make_queue: QueueFactory) -> None:
        """With no active recipient left the message is finished: not listed, no body, never due; still shown."""
        async with opened(make_queue) as queue:
            message = await attempted_once(queue, [BOB, CAROL], {BOB: RecipientState.DELIVERED,
                                                                 CAROL: RecipientState.EXPIRED})
            assert await queue.list() == []
            assert await states(queue, message.id) == {BOB: RecipientState.DELIVERED, CAROL: RecipientState.EXPIRED}
            with pytest.raises(QueueError):
                await queue.read_body(message.id)
            assert await queue.next_due() is None
            assert await queue.retry_now(None, T0 + 2) == 0
            assert await queue.claim_due(T0 + 10**6, 10, OWNER_B, T0 + 10**6 + 300) == []
            assert (await queue.stats(since=T0, now=T0 + 10)).queue_depth == 0

    # -- administration ---------------------------------------------------------------------------

    @scenario
    async def test_retry_now_makes_waiting_recipients_due_but_not_leased_ones(
            self, make_queue: QueueFactory) -> None:
        """``retry_now`` brings deferrals forward; a message leased meanwhile is not handed out twice."""
        async with opened(make_queue) as queue:
            first = await stored(queue, T0, [BOB])
            second = await stored(queue, T0, [CAROL])
            for claimed in await queue.claim_due(T0, 10, OWNER_A, T0 + 300):
                address = claimed.recipients[0].address
                await queue.record(claimed, [update(claimed, address, RecipientState.DEFERRED, T0 + 1, T0 + 3600)],
                                   T0 + 1)
                await queue.release(claimed.id, OWNER_A)
            assert await queue.claim_due(T0 + 10, 10, OWNER_A, T0 + 310) == []
            assert await queue.retry_now([first.id], T0 + 10) > 0
            assert due(await queue.claim_due(T0 + 10, 10, OWNER_A, T0 + 310)) == {first.id: [BOB]}
            assert await queue.retry_now(None, T0 + 20) > 0  # first is leased: only second moves
            assert due(await queue.claim_due(T0 + 20, 10, OWNER_A, T0 + 320)) == {second.id: [CAROL]}
            assert await queue.retry_now(None, T0 + 30) == 0

    @scenario
    async def test_hold_stops_delivery_until_released(self, make_queue: QueueFactory) -> None:
        """Held recipients are never due; ``release_hold`` makes them due: pending if never tried, else deferred."""
        async with opened(make_queue) as queue:
            message = await attempted_once(queue, [BOB, CAROL, DAVE], {BOB: (RecipientState.DEFERRED, T0 + 3600),
                                                                       CAROL: RecipientState.DELIVERED})
            assert await queue.hold([message.id]) > 0
            assert await states(queue, message.id) == {
                BOB: RecipientState.HELD, CAROL: RecipientState.DELIVERED, DAVE: RecipientState.HELD}
            assert await queue.next_due() is None
            assert await queue.claim_due(T0 + 10**6, 10, OWNER_A, T0 + 10**6 + 300) == []
            assert [s.id for s in await queue.list(state="held")] == [message.id]
            assert [s.id for s in await queue.list()] == [message.id], "a held message is still queued"
            assert await queue.release_hold([message.id], T0 + 50) > 0
            detail = await shown(queue, message.id)
            recipients = {r.address: (r.state, r.next_attempt) for r in detail.message.recipients}
            assert recipients[BOB] == (RecipientState.DEFERRED, T0 + 50)
            assert recipients[DAVE] == (RecipientState.PENDING, T0 + 50)
            assert recipients[CAROL][0] is RecipientState.DELIVERED
            assert due(await queue.claim_due(T0 + 50, 10, OWNER_A, T0 + 350)) == {message.id: [BOB, DAVE]}

    @scenario
    async def test_delete_removes_messages(self, make_queue: QueueFactory) -> None:
        """``delete`` removes a message with its body; it counts only messages that were there, and the
        statistics still count it as received."""
        async with opened(make_queue) as queue:
            gone = await stored(queue, T0, [BOB])
            kept = await stored(queue, T0 + 1, [CAROL])
            assert await queue.delete([gone.id, "NOSUCHMESSAGE"]) == 1
            assert await queue.delete([]) == 0
            assert await queue.delete([gone.id]) == 0
            assert await queue.get(gone.id) is None
            st = await queue.stats(since=T0, now=T0 + 10)
            assert (st.received, st.queue_depth, st.recipients) == (2, 1, {"pending": 1})
            with pytest.raises(QueueError):
                await queue.read_body(gone.id)
            assert [s.id for s in await queue.list()] == [kept.id]
            assert due(await queue.claim_due(T0 + 10, 10, OWNER_A, T0 + 300)) == {kept.id: [CAROL]}

    @scenario
    async def test_list_shows_queued_messages_oldest_first(self, make_queue: QueueFactory) -> None:
        """``list``: unfinished messages oldest first, recipients counted by state, the next attempt."""
        async with opened(make_queue) as queue:
            new = await stored(queue, T0 + 10, [DAVE])
            old = await stored(queue, T0, [BOB, CAROL])
            [summary, _] = await queue.list()
            assert (summary.id, summary.sender, summary.created, summary.recipients, summary.next_attempt) == (
                old.id, SENDER, T0, {"pending": 2}, T0)
            assert summary.size == old.size
            claimed = await claim_one(queue, old.id, T0)
            await queue.record(claimed, [update(claimed, BOB, RecipientState.DEFERRED, T0 + 1, T0 + 500),
                                         update(claimed, CAROL, RecipientState.DELIVERED, T0 + 1)], T0 + 1)
            await queue.release(old.id, OWNER_A)
            [summary, other] = await queue.list()
            assert (summary.id, summary.recipients, summary.next_attempt) == (
                old.id, {"deferred": 1, "delivered": 1}, T0 + 500)
            assert (other.id, other.recipients) == (new.id, {"pending": 1})
            assert [s.id for s in await queue.list(state="deferred")] == [old.id]
            assert [s.id for s in await queue.list(state="pending")] == [new.id]
            assert [s.id for s in await queue.list(limit=1)] == [old.id]

    # -- logs -------------------------------------------------------------------------------------

    @scenario
    async def test_events_are_kept_and_filtered(self, make_queue: QueueFactory) -> None:
        """Events come back oldest first (the newest ``limit``); ``kind`` is a dotted prefix, ``level`` a floor."""
        queue = make_queue()
        queue.add_event(Event(T0, "gateway.started", "before open"))  # never raises, may be dropped
        await queue.open()
        try:
            events = [
                Event(T0 + 1, "gateway.started", "up", "info", {"version": "1"}),
                Event(T0 + 2, "message.delivered", "delivered", "info", {"message": "A", "count": 2}),
                Event(T0 + 3, "message.expired", "expired", "warning", {"recipients": [BOB]}),
                Event(T0 + 4, "messages.other", "not a message event", "error", {}),
                Event(T0 + 5, "smarthost.login_failed", "login failed", "debug", {}),
            ]
            for event in events:
                queue.add_event(event)
            await stored(queue, T0, [BOB])  # events are written with the next commit
            got = await queue.events(since=T0 + 1)
            assert got == events
            assert await queue.events(since=T0 + 1, kind="message") == events[1:3]
            assert await queue.events(since=T0 + 1, kind="message.expired") == events[2:3]
            assert await queue.events(since=T0 + 1, kind="mess") == []
            assert await queue.events(since=T0 + 1, level="warning") == events[2:4]
            assert await queue.events(since=T0 + 1, limit=2) == events[3:]
            assert await queue.events(since=T0 + 3) == events[2:]
        finally:
            await queue.close()
        queue.add_event(Event(T0 + 6, "gateway.stopped", "after close"))  # never raises

    @scenario
    async def test_attempts_are_kept_and_filtered(self, make_queue: QueueFactory) -> None:
        """The message log, oldest first; filters by message, sender, recipient, since and outcome or action."""
        async with opened(make_queue) as queue:
            first = await stored(queue, T0, [BOB, CAROL])
            second = await stored(queue, T0 + 5, [BOB], sender="erin@example.org")
            claimed = {m.id: m for m in await queue.claim_due(T0 + 10, 10, OWNER_A, T0 + 300)}
            one, two = claimed[first.id], claimed[second.id]
            lines = [update(one, BOB, RecipientState.DELIVERED, T0 + 10),
                     update(one, CAROL, RecipientState.DEFERRED, T0 + 10, T0 + 3600),
                     update(two, BOB, RecipientState.FAILED, T0 + 20)]
            await queue.record(one, lines[:2], T0 + 10)
            await queue.record(two, lines[2:], T0 + 20)
            delivered, deferred, bounced = (u.attempt for u in lines)
            assert await queue.attempts() == [delivered, deferred, bounced]
            assert await queue.attempts(message=first.id) == [delivered, deferred]
            assert await queue.attempts(sender="erin@example.org") == [bounced]
            assert await queue.attempts(recipient=BOB) == [delivered, bounced]
            assert await queue.attempts(since=T0 + 15) == [bounced]
            assert await queue.attempts(outcome="temporary") == [deferred]
            assert await queue.attempts(outcome="deferred") == [deferred]
            assert await queue.attempts(outcome="permanent") == [bounced]
            assert await queue.attempts(outcome="bounced") == [bounced]
            assert await queue.attempts(outcome="delivered", message=first.id) == [delivered]
            assert await queue.attempts(limit=2) == [deferred, bounced]

    @scenario
    async def test_stats_count_outcomes_and_the_queue(self, make_queue: QueueFactory) -> None:
        """Outcomes by what they led to and messages received in a period; depth, states and oldest now."""
        async with opened(make_queue) as queue:
            first = await stored(queue, T0, [BOB, CAROL])
            second = await stored(queue, T0 + 5, [DAVE])
            claimed = {m.id: m for m in await queue.claim_due(T0 + 10, 10, OWNER_A, T0 + 300)}
            one, two = claimed[first.id], claimed[second.id]
            await queue.record(one, [update(one, BOB, RecipientState.DELIVERED, T0 + 10),
                                     update(one, CAROL, RecipientState.DEFERRED, T0 + 10, T0 + 3600)], T0 + 10)
            report = new_message(T0 + 20, [SENDER], sender="")
            await queue.record(two, [update(two, DAVE, RecipientState.FAILED, T0 + 20)], T0 + 20, new_messages=[report])
            for message in (one, two):
                await queue.release(message.id, OWNER_A)
            st = await queue.stats(since=T0, now=T0 + 100)
            assert (st.since, st.until) == (T0, T0 + 100)
            assert st.outcomes == {"delivered": 1, "deferred": 1, "bounced": 1}
            assert (st.received, st.notifications) == (3, 1)
            assert (st.queue_depth, st.oldest, st.next_attempt) == (2, T0, T0 + 20)
            assert st.recipients == {"delivered": 1, "deferred": 1, "pending": 1}
            later = await queue.stats(since=T0 + 15, now=T0 + 100)
            assert (later.outcomes, later.received, later.notifications) == ({"bounced": 1}, 1, 1)
            earlier = await queue.stats(since=T0, now=T0 + 15)
            assert (earlier.outcomes, earlier.received) == ({"delivered": 1, "deferred": 1}, 2)

    @scenario
    async def test_prune_removes_old_history_but_never_queued_mail(self, make_queue: QueueFactory) -> None:
        """History older than the retention goes (attempts, events, finished messages); queued mail stays."""
        cutoff = T0 + 100
        async with opened(make_queue) as queue:
            old_done = await stored(queue, T0, [BOB])
            waiting, waiting_data = new_message(T0, [CAROL])
            await queue.store(waiting, waiting_data)
            claimed = {m.id: m for m in await queue.claim_due(T0, 10, OWNER_A, T0 + 300)}
            one, two = claimed[old_done.id], claimed[waiting.id]
            await queue.record(one, [update(one, BOB, RecipientState.DELIVERED, T0 + 1)], T0 + 1)
            await queue.record(two, [update(two, CAROL, RecipientState.DEFERRED, T0 + 2, T0 + 3 * self.retention)],
                               T0 + 2)
            for message in (one, two):
                await queue.release(message.id, OWNER_A)
            new_done = await stored(queue, cutoff + 10, [DAVE])
            three = await claim_one(queue, new_done.id, cutoff + 10)
            recent = update(three, DAVE, RecipientState.DELIVERED, cutoff + 11)
            await queue.record(three, [recent], cutoff + 11)
            await queue.release(new_done.id, OWNER_A)
            queue.add_event(Event(T0 + 3, "gateway.started", "old"))
            new_event = Event(cutoff + 12, "gateway.reloaded", "new")
            queue.add_event(new_event)
            await stored(queue, cutoff + 13, [DAVE])  # events are written with the next commit

            removed = await queue.prune(cutoff + self.retention)
            assert {k: removed.get(k) for k in ("attempts", "events", "messages")} == {
                "attempts": 2, "events": 1, "messages": 1}
            assert await queue.get(old_done.id) is None
            assert await states(queue, new_done.id) == {DAVE: RecipientState.DELIVERED}
            assert await states(queue, waiting.id) == {CAROL: RecipientState.DEFERRED}
            assert await queue.read_body(waiting.id) == waiting_data
            assert await queue.attempts() == [recent.attempt]
            assert await queue.events(since=0) == [new_event]

    # -- full storage -----------------------------------------------------------------------------

    @scenario
    async def test_full_storage_raises_queue_full_and_keeps_nothing_half_written(
            self, make_full_queue: QueueFactory) -> None:
        """``store`` on full storage raises ``QueueFull``; neither it nor a failed ``record`` leaves a trace."""
        kept: list[tuple[Message, bytes]] = []
        async with opened(make_full_queue) as queue:
            message = await stored(queue, T0, [BOB])
            claimed = await claim_one(queue, message.id, T0)
            refused: Message | None = None
            for n in range(FILL_LIMIT):
                extra, data = new_message(T0 + 1 + n, [CAROL], size=FILL_BODY)
                try:
                    await queue.store(extra, data)
                except QueueFull:
                    refused = extra
                    break
                kept.append((extra, data))
            assert refused is not None, f"storage never filled ({FILL_LIMIT} x {FILL_BODY} bytes stored)"
            assert await queue.get(refused.id) is None
            assert refused.id not in {s.id for s in await queue.list(limit=10 * FILL_LIMIT)}
            report = new_message(T0 + 5, [SENDER], sender="", size=4 * FILL_BODY)
            with pytest.raises(QueueError):
                await queue.record(claimed, [update(claimed, BOB, RecipientState.FAILED, T0 + 5)], T0 + 5,
                                   new_messages=[report])
            assert await states(queue, message.id) == {BOB: RecipientState.PENDING}
            assert await queue.get(report[0].id) is None
        async with opened(make_full_queue) as queue:
            assert await queue.get(refused.id) is None
            assert await queue.attempts(message=message.id) == []
            for extra, data in kept:
                assert await states(queue, extra.id) == {CAROL: RecipientState.PENDING}
                assert await queue.read_body(extra.id) == data
