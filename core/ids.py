"""Queue IDs: short, unique, sortable by arrival time (like Postfix's long queue IDs)."""

from __future__ import annotations

import os
import threading
import time

_ALPHABET = "0123456789BCDFGHJKLMNPQRSTVWXYZ"
_TAILS = len(_ALPHABET) ** 5  # the random part: five characters
_UNBIASED = (1 << 32) - (1 << 32) % _TAILS  # 32-bit draws at or above this are drawn again (no modulo bias)


class _SystemBits:
    """32-bit numbers from the system's randomness (``os.urandom``), fetched 4 KB at a time.

    One system call per 1,024 IDs instead of one per ID: each call releases the GIL, and the
    intake's thread then waits to get it back from the queue's thread. A forked child starts
    with a fresh buffer, so it never repeats its parent's numbers.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buffer = b""
        self._offset = 0

    def reset(self) -> None:
        """Forget the buffered bytes (after a fork)."""
        self._buffer, self._offset = b"", 0

    def draw(self) -> int:
        """The next 32 random bits."""
        with self._lock:
            if self._offset + 4 > len(self._buffer):
                self._buffer, self._offset = os.urandom(4096), 0
            value = int.from_bytes(self._buffer[self._offset:self._offset + 4], "big")
            self._offset += 4
        return value


_bits = _SystemBits()
os.register_at_fork(after_in_child=_bits.reset)


def new_queue_id(now: float | None = None) -> str:
    """Return an ID such as ``4Fq2XZ7KJ1B3D9``: microseconds since the epoch, then randomness."""
    n = int((time.time() if now is None else now) * 1_000_000)
    out = []
    while n:
        n, r = divmod(n, len(_ALPHABET))
        out.append(_ALPHABET[r])
    stamp = "".join(reversed(out))
    r = _bits.draw()
    while r >= _UNBIASED:
        r = _bits.draw()
    r %= _TAILS
    tail = []
    for _ in range(5):
        r, d = divmod(r, len(_ALPHABET))
        tail.append(_ALPHABET[d])
    return stamp + "".join(tail)
