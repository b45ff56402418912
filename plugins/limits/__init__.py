"""Sending limits for the delivery plugins: counts per account, sender or domain, and adaptive backoff.

Not a chain entry of its own: ``smarthost`` and ``direct`` take ``limits:`` and ``backoff:``
options (``options``) and check them around each transaction (``limiter.Limiter``). Counts
live in the queue's shared counters (``SharedCounters`` in ``core/queue.py``: the sqlite and
postgres backends keep them in the queue's database, so they survive restarts and are shared
by every process and node on the queue); ``memory`` is the fallback for a backend without
them. ``backoff`` slows delivery to a destination that answers "too many ...".
See docs/policy.md.
"""

from __future__ import annotations

from .backoff import Backoff, too_many
from .limiter import Admission, Limiter
from .options import BackoffOptions, DirectLimitSpec, LimitSpec

__all__ = ["Admission", "Backoff", "BackoffOptions", "DirectLimitSpec", "LimitSpec", "Limiter", "too_many"]
