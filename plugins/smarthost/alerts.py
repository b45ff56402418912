"""Gateway events that would otherwise repeat for every message of a burst.

A failed smarthost login fails every waiting message the same way; the
administrator needs one clear event, not a thousand. ``Alerts`` emits an
event of a kind for a key (a login, an account, a sender) once, then stays
quiet for ``interval`` seconds unless ``clear`` says the problem went away.
"""

from __future__ import annotations

from typing import Any

from mailpipe.core.plugin import PluginContext

REPEAT_AFTER = 3600.0


class Alerts:
    """Rate-limited ``context.emit`` per (kind, key)."""

    def __init__(self, context: PluginContext, interval: float = REPEAT_AFTER) -> None:
        self.context = context
        self.interval = interval
        self._last: dict[tuple[str, str], float] = {}

    def emit(self, kind: str, key: str, text: str, *, level: str = "error", **data: Any) -> bool:
        """Emit unless the same (kind, key) was emitted within the interval; True when emitted."""
        now = self.context.clock.now()
        last = self._last.get((kind, key))
        if last is not None and now - last < self.interval:
            return False
        self._last[(kind, key)] = now
        self.context.emit(kind, text, level=level, **data)
        return True

    def inherit(self, other: Alerts, *, quiet: bool) -> None:
        """Keep the alerts ``other`` (a replaced instance) left open, so ``clear`` still reports them;
        ``quiet``: they stay quiet for the rest of their interval, else they may be emitted again at once."""
        for kind_key, last in other._last.items():
            self._last.setdefault(kind_key, last if quiet else float("-inf"))

    def clear(self, kind: str, key: str) -> bool:
        """Forget an alert (the problem went away); True when there was one."""
        return self._last.pop((kind, key), None) is not None
