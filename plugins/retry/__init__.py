"""The ``retry`` plugin: the seed page's "failed delivery" block.

``every`` ("Retry failed messages every"): a recipient that failed temporarily
waits this long before its next attempt. ``expire_after`` ("Delete failed
messages after"): once a message is older than this, a recipient that fails
again expires (leaves the queue; the sender is told). Permanent failures bounce.
"""

from __future__ import annotations

from pydantic import model_validator

from mailpipe.core.hookspecs import hookimpl
from mailpipe.core.message import Decision, Message, Outcome, RecipientResult
from mailpipe.core.plugin import Plugin
from mailpipe.core.settings import Duration, Strict


class RetryOptions(Strict):
    """Options of ``chain: - retry: {...}``."""

    every: Duration = 900.0
    expire_after: Duration = 5 * 86400.0

    @model_validator(mode="after")
    def _sane(self) -> RetryOptions:
        if self.every <= 0:
            raise ValueError("every must be longer than 0s")
        if self.expire_after < self.every:
            raise ValueError("expire_after must not be shorter than every")
        return self


class RetryPlugin(Plugin):
    """Retry failed deliveries at a fixed interval; expire them after a time."""

    name = "retry"
    Options = RetryOptions

    @hookimpl
    def on_failure(self, message: Message, result: RecipientResult) -> Decision:
        """Called by the scheduler per failed recipient: retry, expire, or bounce."""
        opts: RetryOptions = self.options  # type: ignore[assignment]
        if result.outcome is Outcome.PERMANENT:
            return Decision.bounce(reason=str(result.reply))
        now = self.context.clock.now()
        next_at = now + opts.every
        if next_at - message.created > opts.expire_after:
            if now - message.created >= opts.expire_after:
                return Decision.bounce(expired=True, reason=f"undelivered for {opts.expire_after:.0f}s")
            next_at = message.created + opts.expire_after
        return Decision.retry(next_at)
