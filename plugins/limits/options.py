"""The ``limits:`` and ``backoff:`` options of the delivery plugins (``smarthost``, ``direct``).

``limits`` is a list; each entry is one limit of one kind of subject::

    limits:
      - {per: account, max: 100, every: 1h}                    # messages per hour per smarthost login
      - {per: sender, max: 500, every: 1d, count: recipients}  # recipients per day per sender
      - {per: domain, connections: 2}                          # connections at once per recipient domain

A mistake is refused with its key path (``chain[0].smarthost.limits[1].every``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from mailpipe.core.durations import format_duration
from mailpipe.core.settings import Duration, Strict

Per = Literal["account", "sender", "domain"]
MAX_WINDOW = 31 * 86400.0


class LimitSpec(Strict):
    """One sending limit: at most ``max`` messages (or recipients) per ``every``, or ``connections`` at once.

    ``per``: ``account`` (the smarthost login), ``sender`` (the envelope sender) or
    ``domain`` (the recipient's domain). Counts are shared by every process on the queue.
    """

    per: Per
    max: int | None = Field(None, ge=1, description="how many per window")
    every: Duration | None = Field(None, description="the window: 1m, 1h, 1d ...")
    count: Literal["messages", "recipients"] = "messages"
    connections: int | None = Field(None, ge=1, description="connections at once (per process)")

    @model_validator(mode="after")
    def _one_kind(self) -> LimitSpec:
        if self.connections is not None:
            if self.max is not None or self.every is not None:
                raise ValueError("a limit is either {connections: N} or {max: N, every: DURATION}, not both")
            return self
        if self.max is None or self.every is None:
            raise ValueError("expected max and every (e.g. {per: account, max: 100, every: 1h}) "
                             "or connections (e.g. {per: domain, connections: 2})")
        if not 1.0 <= self.every <= MAX_WINDOW:
            raise ValueError(f"every must be between 1s and 31d, got {format_duration(self.every)}")
        return self

    @property
    def rate(self) -> str:
        """``100/h``, ``500 recipients/d``, ``2 connections``: the limit in words."""
        if self.connections is not None:
            return f"{self.connections} connection{'s' if self.connections != 1 else ''}"
        assert self.max is not None and self.every is not None
        unit = {60.0: "min", 3600.0: "h", 86400.0: "d"}.get(self.every, format_duration(self.every))
        what = " recipients" if self.count == "recipients" else ""
        return f"{self.max}{what}/{unit}"


class BackoffOptions(Strict):
    """``backoff:`` — how delivery to a destination slows when it answers 421/450/451 "too many ...".

    The first such reply pauses deliveries to that destination for ``initial``; each further
    one doubles the pause, up to ``max``; successes step it down again.
    """

    initial: Duration = Field(60.0, gt=0)
    max: Duration = Field(3600.0, gt=0)

    @model_validator(mode="after")
    def _order(self) -> BackoffOptions:
        if self.max < self.initial:
            raise ValueError("max must not be shorter than initial")
        return self


class DirectLimitSpec(LimitSpec):
    """A limit of ``direct``, which logs in nowhere: per ``sender`` or ``domain`` only."""

    per: Literal["sender", "domain"]  # type: ignore[assignment]
