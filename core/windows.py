"""When delivery runs may start: at once, or only in the ``delivery.schedule`` windows.

``delivery.send_immediately: true`` (the default): always. Otherwise a run may start
only in a minute that one of the ``delivery.schedule`` cron expressions matches (local
time; ``0 */2 * * *`` is the first minute of every second hour, ``* 22-23,0-5 * * *``
every minute of the night). A run that started drains everything due, even past the
window; mail deferred during it waits for the next window. ``force()`` (``pipeline
queue retry``) starts a run at any time. Every time used comes from the caller, so a
restart changes no schedule; windows missed while mailpipe was down are not made up.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from croniter import croniter

from .settings import DeliverySettings

log = logging.getLogger("mailpipe.scheduler")


class Windows:
    """The send-now-or-wait state of one scheduler; ``delivery`` gives the settings in force."""

    def __init__(self, delivery: Callable[[], DeliverySettings]) -> None:
        self._delivery = delivery
        self._force = False
        self._draining = delivery().send_immediately

    def force(self) -> None:
        """Start a run at the next look, even outside the schedule."""
        self._force = True

    def in_window(self, now: float) -> bool:
        """Whether ``now`` is in a minute one of ``delivery.schedule``'s expressions matches (local time)."""
        when = datetime.fromtimestamp(now).astimezone()
        return any(croniter.match(expr, when) for expr in self._delivery().schedule)

    def next_window(self, now: float) -> float | None:
        """Start of the next schedule window after ``now``; None without a schedule."""
        schedule = self._delivery().schedule
        if not schedule:
            return None
        when = datetime.fromtimestamp(now).astimezone()
        return min(croniter(expr, when).get_next(float) for expr in schedule)

    def may_send(self, now: float) -> bool:
        """Whether a run may start now: immediately, forced, draining, or in a schedule window."""
        if self._delivery().send_immediately:
            return True
        if self._force or self.in_window(now):
            self._force = False
            self._draining = True
        return self._draining

    @property
    def waiting_for_window(self) -> bool:
        """True between runs under a schedule: nothing may start until the next window (or a force)."""
        return not self._delivery().send_immediately and not self._draining

    def run_ended(self, now: float) -> None:
        """Nothing was due and nothing is in flight: a scheduled or forced run is over."""
        if not self._delivery().send_immediately and self._draining:
            self._draining = False
            log.debug("delivery run finished; next schedule window at %s", self.next_window(now))
