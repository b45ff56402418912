"""Time as the pipeline sees it: injectable so tests can drive retry and expiry."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Anything with ``now()`` returning Unix time in seconds."""

    def now(self) -> float: ...


class SystemClock:
    """The real wall clock (all stored times are Unix seconds)."""

    def now(self) -> float:
        return time.time()


class ManualClock:
    """A clock that only moves when told to; for tests."""

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds

    def set(self, when: float) -> None:
        self._now = when
