"""Recent failures per key (a client address, a user name) in a sliding time window, in bounded memory.

Used where guessing must be slowed or cut: the intake's SMTP AUTH (failures per client
address) and the web console's login (failures per client address and per user name).
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable


class FailureWindow:
    """How many failures each key had within the last ``window`` seconds.

    At most ``max_keys`` keys are remembered (the least recently failed is forgotten first)
    and at most ``max_per_key`` failures per key, so a flood of addresses or guesses cannot
    grow memory without limit. ``clock`` is monotonic seconds (tests may pass their own).
    """

    def __init__(self, window: float, *, max_keys: int = 100_000, max_per_key: int = 1000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self.max_keys = max_keys
        self.max_per_key = max_per_key
        self.clock = clock
        self._times: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, key: str) -> deque[float] | None:
        times = self._times.get(key)
        if times is None:
            return None
        horizon = self.clock() - self.window
        while times and times[0] <= horizon:
            times.popleft()
        if not times:
            del self._times[key]
            return None
        return times

    def count(self, key: str) -> int:
        """Failures of ``key`` within the window (0 for a key never seen or long quiet)."""
        times = self._recent(key)
        return len(times) if times is not None else 0

    def add(self, key: str) -> int:
        """Record one failure of ``key`` now; the number of its failures within the window, this one included."""
        times = self._recent(key)
        if times is None:
            times = self._times[key] = deque(maxlen=self.max_per_key)
        times.append(self.clock())
        self._times.move_to_end(key)
        while len(self._times) > self.max_keys:
            self._times.popitem(last=False)
        return len(times)

    def clear(self, key: str) -> None:
        """Forget the failures of ``key`` (after a successful login, where that is wanted)."""
        self._times.pop(key, None)

    def retry_after(self, key: str) -> float:
        """Seconds until the oldest failure of ``key`` leaves the window (0 when it has none)."""
        times = self._recent(key)
        return max(0.0, times[0] + self.window - self.clock()) if times else 0.0
