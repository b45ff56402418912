"""The ``retry`` plugin: the seed page's "failed delivery" block.

``every`` ("Retry failed messages every"): a recipient that failed temporarily
waits this long before its next attempt. ``backoff`` (optional) makes the wait
grow instead, as Postfix's minimal/maximal backoff time: ``min`` (default:
``every``) after the first failure, multiplied by ``factor`` after each further
one, never more than ``max``. ``expire_after`` ("Delete failed messages
after"): a recipient still undelivered this long after the message arrived
expires at its next failed attempt: it leaves the queue and the sender gets a
bounce. The last retry is moved to the expiry time, so no message waits much
longer than ``expire_after``. ``warn_after`` (optional): once a message has
waited this long, the sender gets one delay warning. Permanent failures bounce
at once.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import Field, model_validator

from mailpipe.core.dsn import human_duration
from mailpipe.core.hookspecs import hookimpl
from mailpipe.core.message import Decision, Message, Outcome, RecipientResult
from mailpipe.core.plugin import Plugin
from mailpipe.core.settings import Duration, Strict


class BackoffOptions(Strict):
    """Growing intervals between attempts: ``min``, ``min*factor``, ``min*factor**2``, ... up to ``max``."""

    min: Duration | None = Field(None, description="first interval (default: retry.every)")
    max: Duration = 4 * 3600.0
    factor: float = Field(2.0, ge=1.0, le=10.0)


class RetryOptions(Strict):
    """Options of ``chain: - retry: {...}``."""

    every: Duration = 900.0
    expire_after: Duration = 5 * 86400.0
    backoff: BackoffOptions | None = None
    warn_after: Duration | None = None

    @model_validator(mode="after")
    def _sane(self) -> RetryOptions:
        if self.every <= 0:
            raise ValueError("every must be longer than 0s")
        if self.expire_after < self.every:
            raise ValueError("expire_after must not be shorter than every")
        if self.backoff is not None:
            if self.backoff.min is None:
                self.backoff.min = self.every
            if self.backoff.min <= 0:
                raise ValueError("backoff.min must be longer than 0s")
            if self.backoff.max < self.backoff.min:
                raise ValueError("backoff.max must not be shorter than backoff.min")
        if self.warn_after is not None and not 0 < self.warn_after < self.expire_after:
            raise ValueError("warn_after must be longer than 0s and shorter than expire_after")
        return self

    def interval(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failed attempt (1 for the first)."""
        if self.backoff is None:
            return self.every
        first = self.backoff.min or self.every
        steps = min(max(0, failures - 1), 64)  # past 64 doublings every sane max is reached
        return min(self.backoff.max, first * self.backoff.factor ** steps)


def _when(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M UTC")


class RetryPlugin(Plugin):
    """Retry failed deliveries at a fixed interval (or with backoff); expire them after a time."""

    name = "retry"
    Options = RetryOptions

    @property
    def opts(self) -> RetryOptions:
        return self.options  # type: ignore[return-value]

    def failures(self, message: Message, address: str) -> int:
        """How many attempts of ``address`` have failed, this one included."""
        rcpt = next((r for r in message.recipients if r.address == address), None)
        return (rcpt.attempts if rcpt is not None else 0) + 1

    @hookimpl
    def on_failure(self, message: Message, result: RecipientResult) -> Decision:
        """Called by the scheduler per failed recipient: retry (maybe with a delay warning),
        expire (bounce, ``expired``), or bounce a permanent failure.

        Expiry is decided here, at an attempt: a recipient nobody attempts (held,
        or waiting for a schedule window) expires at its next attempt.
        """
        opts = self.opts
        if result.outcome is Outcome.PERMANENT:
            return Decision.bounce(reason=str(result.reply))
        now = self.context.clock.now()
        deadline = message.created + opts.expire_after
        if now >= deadline:
            return Decision.bounce(
                expired=True, reason=f"undelivered for {human_duration(now - message.created)}",
            )
        next_at = min(now + opts.interval(self.failures(message, result.recipient)), deadline)
        warn = (opts.warn_after is not None and now - message.created >= opts.warn_after
                and not message.attributes.get("delay_warned"))
        reason = f"The mail system keeps trying until {_when(deadline)}." if warn else ""
        return Decision.retry(next_at, reason, warn=warn)
