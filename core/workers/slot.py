"""Which worker this process is: its number, how many serve together, and the supervisor's pid.

``pipeline serve`` with ``workers: N`` (N ≥ 2) runs a supervisor and N worker processes; each
worker calls ``assume`` once, before it opens anything, and the parts that act differently
in a worker ask ``current()``: the sqlite queue picks the worker's own queue file, the
console and the metrics page serve from worker 1 only, cluster-wide chores run in worker 1.
Every other process (one ``pipeline serve`` without workers, the administration commands,
tests in one process) is worker 1 of 1, which changes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass


@dataclass(frozen=True)
class WorkerSlot:
    """Worker ``index`` (1 to ``count``) of a ``pipeline serve`` whose supervisor is process ``supervisor``."""

    index: int = 1
    count: int = 1
    supervisor: int | None = None

    @property
    def primary(self) -> bool:
        """Worker 1: it serves the console and the metrics page and runs the chores that run once."""
        return self.index == 1

    @property
    def supervised(self) -> bool:
        """Whether this process is one of several workers under a supervisor."""
        return self.supervisor is not None

    def __str__(self) -> str:
        return f"worker {self.index} of {self.count}"

    def share(self, total: int | None) -> int | None:
        """This worker's share of a limit meant for the whole gateway (``delivery.concurrency``,
        ``intake.max_connections``, ...): ``total / count`` rounded up, at least 1 (None stays None)."""
        if total is None:
            return None
        return max(1, -(-total // self.count))

    @classmethod
    def parse(cls, text: str) -> WorkerSlot:
        """``INDEX/COUNT@PID`` (what the supervisor passes to a worker) as a slot; ValueError when malformed."""
        numbers, _, pid = text.partition("@")
        index, _, count = numbers.partition("/")
        slot = cls(int(index), int(count), int(pid) if pid else None)
        if not 1 <= slot.index <= slot.count:
            raise ValueError(f"worker {text!r}: expected INDEX/COUNT@PID with 1 <= INDEX <= COUNT")
        return slot

    def argument(self) -> str:
        """The slot as ``parse`` reads it."""
        return f"{self.index}/{self.count}@{self.supervisor or ''}"


_current = WorkerSlot()


def current() -> WorkerSlot:
    """This process's slot: worker 1 of 1 unless ``assume`` was called."""
    return _current


def assume(slot: WorkerSlot) -> None:
    """Called once by a worker process before it opens the queue: this process is ``slot``.

    Its log lines carry ``worker=INDEX`` from now on, so the lines of several workers in one
    log can be told apart.
    """
    global _current
    _current = slot
    if slot.supervised:
        for handler in logging.getLogger().handlers:
            handler.addFilter(_WorkerField(slot.index))


class _WorkerField(logging.Filter):
    """Adds ``worker=INDEX`` to each record's fields (the text and JSON log formats print them)."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index

    def filter(self, record: logging.LogRecord) -> bool:
        record.fields = {**(getattr(record, "fields", None) or {}), "worker": self.index}
        return True
