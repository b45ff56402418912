"""Queue IDs: short, unique, sortable by arrival time (like Postfix's long queue IDs)."""

from __future__ import annotations

import secrets
import time

_ALPHABET = "0123456789BCDFGHJKLMNPQRSTVWXYZ"


def new_queue_id(now: float | None = None) -> str:
    """Return an ID such as ``4Fq2XZ7KJ1B3D9``: microseconds since the epoch, then randomness."""
    n = int((time.time() if now is None else now) * 1_000_000)
    out = []
    while n:
        n, r = divmod(n, len(_ALPHABET))
        out.append(_ALPHABET[r])
    stamp = "".join(reversed(out))
    tail = "".join(secrets.choice(_ALPHABET) for _ in range(5))
    return stamp + tail
