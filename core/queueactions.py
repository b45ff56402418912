"""What an administrator does to queued messages — retry, hold, release, delete — each with an audit event.

Used by the ``pipeline queue`` commands and the web console, so both act the same way and
leave the same trail: one event per message acted on, naming the message and who did it
(``<via>.<action>``: ``cli.delete``, ``console.hold``; data ``message`` and ``user``).
Messages are named by ID, or all at once (optionally only those with a recipient in one
state); IDs the queue does not know are returned, not acted on.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from .events import Events
from .queue import QueueAdmin

ALL = 10**9
"""``list`` limit meaning "every message" (the queue's own limit is for pages)."""

WAITING = ("pending", "deferred")


@dataclass(frozen=True)
class Action:
    """One administration action: the states it acts on and the queue call that does it."""

    name: str
    acts_on: tuple[str, ...]  # a message with a recipient in one of these states is acted on
    run: Callable[[QueueAdmin, list[str], float], Awaitable[int]]
    counts: str = "recipients"  # what ``run`` returns the number of


async def _retry(queue: QueueAdmin, ids: list[str], now: float) -> int:
    return await queue.retry_now(ids, now)


async def _hold(queue: QueueAdmin, ids: list[str], now: float) -> int:
    return await queue.hold(ids)


async def _release(queue: QueueAdmin, ids: list[str], now: float) -> int:
    return await queue.release_hold(ids, now)


async def _delete(queue: QueueAdmin, ids: list[str], now: float) -> int:
    return await queue.delete(ids)


ACTIONS: dict[str, Action] = {
    "retry": Action("retry", WAITING, _retry),
    "hold": Action("hold", WAITING, _hold),
    "release": Action("release", ("held",), _release),
    "delete": Action("delete", (*WAITING, "held"), _delete, counts="messages"),
}


def applies(action: str, states: dict[str, int]) -> bool:
    """Whether ``action`` would change a message whose recipients are in ``states`` (state -> count)."""
    return any(states.get(s) for s in ACTIONS[action].acts_on)


@dataclass
class Done:
    """What ``perform`` did: how many recipients (messages, for delete) changed, on which messages, and the
    IDs the queue does not know."""

    count: int = 0
    acted: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)


async def states_of(queue: QueueAdmin, ids: list[str] | None, state: str | None = None) -> dict[str, dict[str, int]]:
    """Message ID -> its recipients by state: of ``ids`` (unknown ones left out), or of every queued message
    (with ``state``: those with a recipient in it)."""
    if ids is None:
        return {m.id: dict(m.recipients) for m in await queue.list(state=state, limit=ALL)}
    found: dict[str, dict[str, int]] = {}
    for mid in dict.fromkeys(ids):
        detail = await queue.get(mid)
        if detail is not None:
            found[mid] = dict(Counter(r.state.value for r in detail.message.recipients))
    return found


async def perform(queue: QueueAdmin, events: Events, action: str, ids: list[str] | None, *, now: float,
                  via: str, user: str, who: str | None = None, state: str | None = None) -> Done:
    """Do ``action`` on the messages ``ids`` (None: every queued message, or those with a recipient in
    ``state``) and emit ``<via>.<action>`` for each message it applies to.

    ``user`` goes into the events' data, ``who`` (default: ``user``) into their text. Messages the
    action does not apply to (a release of a message nothing of which is held) are left alone.
    """
    targets = await states_of(queue, ids, state)
    done = Done(unknown=[i for i in dict.fromkeys(ids or []) if i not in targets])
    done.acted = [mid for mid, states in targets.items() if applies(action, states)]
    if done.acted:
        done.count = await ACTIONS[action].run(queue, done.acted, now)
    for mid in done.acted:
        events.emit(f"{via}.{action}", f"{mid}: {action} by {who or user}", message=mid, user=user)
    return done
