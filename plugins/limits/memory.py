"""Counters in this process's memory: the sending limits' fallback for a queue without ``SharedCounters``."""

from __future__ import annotations

from mailpipe.core.queue import CounterRefusal, CounterRequest, CounterUse, SharedCounters


class MemoryCounters(SharedCounters):
    """``SharedCounters`` kept in a dict: counts are per process and are lost at a restart."""

    def __init__(self) -> None:
        self._buckets: dict[str, dict[int, int]] = {}
        self._keys: dict[str, tuple[str, int, float, float]] = {}

    async def take(self, requests: list[CounterRequest], now: float) -> CounterRefusal | None:
        """Count every request at ``now`` or none; the first refusal."""
        for r in requests:
            refusal = r.refusal(list(self._buckets.get(r.key, {}).items()), now)
            if refusal is not None:
                return refusal
        for r in requests:
            buckets = self._buckets.setdefault(r.key, {})
            buckets[r.bucket(now)] = buckets.get(r.bucket(now), 0) + r.amount
            for old in [b for b in buckets if b < r.first_bucket(now)]:
                del buckets[old]
            self._keys[r.key] = (r.label, r.max, r.every, now)
        return None

    async def give_back(self, requests: list[CounterRequest], taken_at: float) -> None:
        """Uncount requests taken at ``taken_at``."""
        for r in requests:
            buckets = self._buckets.get(r.key, {})
            b = r.bucket(taken_at)
            if b in buckets:
                buckets[b] = max(0, buckets[b] - r.amount)

    async def usage(self, now: float) -> list[CounterUse]:
        """Every counter used so far, by label."""
        out = []
        for key, (label, most, every, last) in self._keys.items():
            first = CounterRequest(key, 0, most, every).first_bucket(now)
            used = sum(c for b, c in self._buckets.get(key, {}).items() if b >= first)
            out.append(CounterUse(key, label, used, most, every, last))
        return sorted(out, key=lambda u: u.label)
