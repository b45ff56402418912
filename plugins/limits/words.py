"""How the sending limits say things: times as people read them in ``queue list`` and the console."""

from __future__ import annotations

import time


def when(at: float, now: float) -> str:
    """``14:02`` (local time) within the next 20 hours, ``2025-03-01 14:02`` beyond."""
    fmt = "%H:%M" if at - now < 20 * 3600 else "%Y-%m-%d %H:%M"
    return time.strftime(fmt, time.localtime(at))
