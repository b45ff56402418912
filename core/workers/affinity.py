"""Each worker on a core of its own (``pin_workers``), so its threads wake each other on one CPU.

A worker hands every message to its queue's writer thread and takes the result back: two
wake-ups between threads per message stored and two per attempt recorded, plus the SMTP
replies. When the two threads sit on different CPUs each wake-up is an inter-processor
interrupt; on the 2-core virtual machine the benchmark runs on, a round trip between the
event loop and the SQLite thread took 72 µs across CPUs and 8 µs on one (docs/workers.md has
the figures). Pinned, a worker's threads share one core; the GIL lets only one of them run
Python at a time anyway.

Called by a worker process (``pipeline serve --worker``) before it opens anything. The core
is chosen from the CPUs the supervisor may run on (its affinity mask, so ``taskset`` or a
cgroup cpuset still rules): worker ``i`` takes the ``i``-th of them. Nothing is pinned with
one process (its writer thread is better off free to run beside the loop on another core:
measured), nor when there are more workers than cores (two pinned workers on one core could
not be moved apart), nor where the platform has no ``sched_setaffinity``.
"""

from __future__ import annotations

import logging
import os

from .slot import WorkerSlot

log = logging.getLogger("mailpipe.workers")


def core_for(slot: WorkerSlot, allowed: set[int]) -> int | None:
    """The CPU worker ``slot`` runs on among ``allowed``, or None when it is not pinned (see the module's text)."""
    if not slot.supervised or slot.count < 2 or slot.count > len(allowed):
        return None
    return sorted(allowed)[slot.index - 1]


def pin(slot: WorkerSlot) -> int | None:
    """Called by a worker at start: pin every thread of this process to its core; which CPU, or None."""
    getter = getattr(os, "sched_getaffinity", None)
    setter = getattr(os, "sched_setaffinity", None)
    if getter is None or setter is None:
        return None
    try:
        cpu = core_for(slot, set(getter(0)))
        if cpu is None:
            return None
        # Linux sets affinity per thread: every thread there is now (threads started later inherit it).
        try:
            threads = [int(tid) for tid in os.listdir("/proc/self/task")]
        except OSError:
            threads = [0]
        for tid in threads:
            setter(tid, {cpu})
    except OSError as exc:  # not allowed (a restricted container): the worker runs unpinned
        log.warning("%s: could not be pinned to a core: %s", slot, exc)
        return None
    log.debug("%s runs on CPU %d", slot, cpu)
    return cpu
