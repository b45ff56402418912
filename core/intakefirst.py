"""``delivery.intake_first``: during a burst of incoming mail that fills the core, the intake goes first.

A worker's intake and its deliveries share one event loop and one core. When clients send
faster than that core can both take mail and pass it on, the two share it evenly and the
clients wait on the deliveries: the intake takes mail no faster than it is delivered. A
gateway in front of internal servers is better off taking a burst at full speed (its senders
are waiting; the mail is safe once committed) and delivering it right after: Exim's
``queue_only_load`` does the same when the load is high.

So when this worker's event loop wants at least ``SATURATED`` of a core (it is running or
waiting for a CPU that long: see ``loop_demand``) while at least
``MIN_SESSIONS`` clients are connected to it, the scheduler starts **one delivery at a
time** (never none: mail keeps moving) for as long as the clients stay and the loop
still wants ``STILL_BUSY`` of a core, and at most ``intake_first`` seconds. Then the
deliveries take their full share again even if the burst goes on, and the intake goes first
again only after as long a time without a burst — so under load that never ends the queue
does not grow without bound, and a site that sends all day is served as before. Bursts are
looked for every ``TICK`` seconds and end when no look saw one for ``END_AFTER``; the end of
one wakes the scheduler, which starts the mail it held during the burst first (stored claimed,
kept in memory: ``Scheduler.reserve``), then claims what else waited. ``intake_first: 0`` turns it off.

Owned by the scheduler (``Scheduler.start``/``stop``), which asks ``concurrency`` before
starting deliveries; the gateway tells it how many clients are connected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("mailpipe.scheduler")

TICK = 0.025
"""Seconds between two looks at the core and the clients (a burst of 3,000 messages lasts about a second)."""
END_AFTER = 0.1
"""Seconds without a look that saw the burst after which it counts as over (one quiet look is not enough)."""
SATURATED = 0.8
"""The share of one core the event loop wants (running, or runnable and waiting for a CPU) from which the
worker counts as full."""
STILL_BUSY = 0.25
"""Once the intake goes first, the share of a core below which the burst counts as over (the intake alone
may want less than a full core; deliveries then take the rest)."""
MIN_SESSIONS = 2
"""Clients connected to this worker from which a full core counts as a burst of incoming mail."""
SCHEDSTAT = Path("/proc/thread-self/schedstat")


def loop_demand() -> float:
    """Seconds the calling thread (the event loop: the looks run on it) has run or waited to run on a CPU.

    Time spent runnable but waiting counts: on a machine whose cores are shared (the SMTP clients, a
    co-located sink, other services in their own cgroups), a loop with work every moment may get only
    half a core, and its own CPU time would say "half idle". Linux's schedstat (``run_ns wait_ns
    slices``) says both; without it (another OS, schedstats off) the thread's CPU time is used.
    """
    try:
        run, wait, _ = SCHEDSTAT.read_text().split()
    except (OSError, ValueError):
        return time.thread_time()
    return (int(run) + int(wait)) / 1e9


class IntakeFirst:
    """Whether deliveries step back for the intake now (see the module's text).

    ``clients`` is how many clients are connected to this worker; ``seconds`` the
    ``delivery.intake_first`` in force (read at every look, so a reload applies at once);
    ``cpu`` and ``clock`` are the loop's demand in seconds (``loop_demand``) and a monotonic clock (tests
    pass their own).
    """

    def __init__(self, clients: Callable[[], int], seconds: Callable[[], float], *,
                 cpu: Callable[[], float] = loop_demand, clock: Callable[[], float] = time.monotonic) -> None:
        self._clients = clients
        self._seconds = seconds
        self._cpu = cpu
        self._clock = clock
        self.active = False
        self._since = 0.0  # when the current hold began
        self._seen = float("-inf")  # when a look last saw a burst
        self._calm_since: float | None = None  # when the last burst ended (None: none since the start)
        self._spent = False  # this burst had its time: deliveries share again until a calm as long
        self._last = (clock(), cpu())
        self._task: asyncio.Task[None] | None = None

    def concurrency(self, share: int) -> int:
        """Called by the scheduler: how many deliveries may run at once now, out of ``share``."""
        return min(share, 1) if self.active else share

    def look(self) -> bool:
        """One look at the core and the clients (every ``TICK``); True when deliveries take their full share
        again (the caller wakes the scheduler: held mail first, then what waited in the queue)."""
        now, cpu = self._clock(), self._cpu()
        elapsed = now - self._last[0]
        busy = (cpu - self._last[1]) / elapsed if elapsed > 0 else 0.0
        self._last = (now, cpu)
        clients = self._clients()  # asked once: it is the most since the last look
        limit = self._seconds()
        full = busy >= (STILL_BUSY if self.active else SATURATED)
        if limit > 0 and full and clients >= MIN_SESSIONS:
            self._seen = now
        over = now - self._seen >= END_AFTER
        if self.active:
            if limit <= 0:
                return self._end(now, "intake_first is 0")
            if over:
                return self._end(now, f"the burst is over (core {busy:.0%} busy, {clients} clients at most)")
            if now - self._since >= limit:
                self._spent = True
                return self._end(now, f"clients still sending after {limit:g}s; deliveries take their share again")
            return False
        if over:
            if self._spent:  # a burst that outlasted its hold has ended: the calm starts now
                self._spent, self._calm_since = False, now
            return False
        rested = self._calm_since is None or now - self._calm_since >= limit
        if self._seen == now and not self._spent and rested:
            self.active, self._since = True, now
            log.info("intake first: the core is %.0f%% busy and %d clients are sending; one delivery at a time "
                     "for up to %gs", busy * 100, clients, limit)
        return False

    def _end(self, now: float, why: str) -> bool:
        """Called by ``look`` while a hold is on: end it (True: the caller wakes the scheduler)."""
        self.active = False
        self._calm_since = now
        log.info("intake first ended after %.1fs: %s", now - self._since, why)
        return True

    # -- the looking task (run by the scheduler) ---------------------------------------------------

    def start(self, on_release: Callable[[], None]) -> None:
        """Start looking every ``TICK`` seconds; ``on_release`` is called when deliveries may take their share."""
        self._task = asyncio.create_task(self._run(on_release), name="mailpipe-intake-first")

    async def stop(self) -> None:
        """Stop looking; deliveries take their full share."""
        task, self._task = self._task, None
        self.active = False
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self, on_release: Callable[[], None]) -> None:
        while True:
            await asyncio.sleep(TICK)
            try:
                released = self.look()
            except Exception:  # a broken look must not stop delivery: full share, and say so once
                log.exception("intake first: look failed; deliveries take their full share")
                self.active = False
                on_release()
                return
            if released:
                on_release()
