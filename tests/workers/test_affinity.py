"""``pin_workers``: each worker of ``pipeline serve`` on a core of its own, every thread of it; a restarted
worker on the same core; nothing pinned with one process, more workers than cores, or ``pin_workers: false``.
core/workers/affinity.py, docs/workers.md.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from mailpipe.core.workers.affinity import core_for, pin
from mailpipe.core.workers.slot import WorkerSlot
from tests.peers.net import wait_until
from tests.peers.sink import RecordingSink
from tests.workers.helpers import relay_config, serving, worker_pid, worker_pids

CORES = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
needs_two_cores = pytest.mark.skipif(len(CORES) < 2, reason="pinning two workers needs two cores")


def thread_cpus(pid: int) -> dict[int, str]:
    """Every thread of ``pid`` and the CPUs it may run on (``Cpus_allowed_list`` of /proc, e.g. ``0-1``)."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        for line in (task / "status").read_text().splitlines():
            if line.startswith("Cpus_allowed_list:"):
                out[int(task.name)] = line.split(":", 1)[1].strip()
    return out


@pytest.mark.parametrize(("slot", "allowed", "expected"), [
    (WorkerSlot(1, 2, 100), {0, 1}, 0),
    (WorkerSlot(2, 2, 100), {0, 1}, 1),
    (WorkerSlot(2, 2, 100), {3, 7}, 7),  # taskset / a cpuset: the cores the supervisor may use
    (WorkerSlot(2, 4, 100), {0, 1, 2, 3, 4, 5}, 1),
    (WorkerSlot(3, 3, 100), {0, 1}, None),  # more workers than cores: nobody pinned
    (WorkerSlot(1, 1, None), {0, 1}, None),  # one process: its writer thread stays free
    (WorkerSlot(1, 1, 100), {0, 1}, None),
])
def test_which_core_a_worker_takes(slot: WorkerSlot, allowed: set[int], expected: int | None) -> None:
    assert core_for(slot, allowed) == expected


@pytest.fixture
def sink():
    with RecordingSink() as s:
        yield s


def test_a_refused_pinning_is_logged_and_the_worker_runs_unpinned(monkeypatch, caplog) -> None:
    """A restricted container refuses ``sched_setaffinity``: one warning naming the worker, no core, and
    this process's own affinity untouched."""
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no sched_setaffinity on this platform")
    before = os.sched_getaffinity(0)

    def refuse(*_args: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1})
    monkeypatch.setattr(os, "sched_setaffinity", refuse)
    with caplog.at_level("WARNING", logger="mailpipe.workers"):
        assert pin(WorkerSlot(1, 2, os.getpid())) is None
    assert "could not be pinned to a core" in caplog.text and "Operation not permitted" in caplog.text
    monkeypatch.undo()
    assert os.sched_getaffinity(0) == before


@needs_two_cores
def test_each_worker_runs_on_a_core_of_its_own_and_keeps_it_after_a_restart(mailpipe_factory, sink) -> None:
    """Two workers: every thread of worker 1 on the first core, of worker 2 on the second; the supervisor
    stays free; worker 2 started again after SIGKILL is on the second core again."""
    gw = mailpipe_factory(relay_config(sink)).start()
    serving(gw, 2)
    expected = {1: str(CORES[0]), 2: str(CORES[1])}
    for index, cpu in expected.items():
        threads = thread_cpus(worker_pid(gw, index))
        assert len(threads) >= 2, threads  # the event loop and the queue's writer thread at least
        assert set(threads.values()) == {cpu}, (index, threads)
    assert set(thread_cpus(gw.pid).values()) != {expected[1]}, "the supervisor is not pinned"
    second = worker_pid(gw, 2)
    os.kill(second, signal.SIGKILL)
    wait_until(lambda: len(worker_pids(gw)) == 2 and second not in worker_pids(gw), 30, "worker 2 started again",
               gw.log_text)

    def cpus_of_second() -> set[str] | None:
        try:  # the new process may not have its command line yet, or be gone again
            return set(thread_cpus(worker_pid(gw, 2)).values())
        except (AssertionError, OSError):
            return None

    wait_until(lambda: cpus_of_second() == {expected[2]}, 30, "the new worker 2 pinned", gw.log_text)
    assert gw.stop() == 0


@needs_two_cores
def test_pin_workers_false_leaves_the_workers_free(mailpipe_factory, sink) -> None:
    gw = mailpipe_factory(relay_config(sink, pin_workers=False)).start()
    serving(gw, 2)
    free = set(thread_cpus(gw.pid).values())
    for index in (1, 2):
        assert set(thread_cpus(worker_pid(gw, index)).values()) == free
    assert gw.stop() == 0
