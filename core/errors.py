"""Errors that cross module boundaries: SMTP refusals, plugin failures, bad config; parts not open yet."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})\b\s*")


@dataclass(frozen=True)
class Reply:
    """An SMTP reply: code, optional RFC 3463 enhanced status code and text.

    Used both for replies mailpipe gives its clients and for replies remote
    servers gave mailpipe. ``temporary`` is true for 4xx codes.
    """

    code: int
    enhanced: str | None
    text: str

    @classmethod
    def parse(cls, code: int, text: str) -> Reply:
        """Split an enhanced status code (``5.1.1 ...``) off the front of ``text``."""
        text = " ".join(text.split())
        m = _ENHANCED.match(text)
        if m:
            return cls(code, ".".join(m.groups()), text[m.end():])
        return cls(code, None, text)

    @property
    def temporary(self) -> bool:
        return 400 <= self.code < 500

    @property
    def permanent(self) -> bool:
        return self.code >= 500

    def __str__(self) -> str:
        parts = [str(self.code)]
        if self.enhanced:
            parts.append(self.enhanced)
        if self.text:
            parts.append(self.text)
        return " ".join(parts)


class SMTPError(Exception):
    """A refusal with an SMTP reply; raise it from any hook to refuse.

    From ``accept`` it becomes the reply to the client's DATA. From ``route``,
    ``authenticate`` or ``deliver`` it becomes the outcome of every recipient of
    that route: temporary for 4xx, permanent for 5xx.
    """

    def __init__(self, code: int, enhanced: str | None, text: str) -> None:
        self.reply = Reply(code, enhanced, text)
        super().__init__(str(self.reply))

    @property
    def temporary(self) -> bool:
        return self.reply.temporary


class TemporaryError(SMTPError):
    """A 4xx refusal (default 451 4.3.0)."""

    def __init__(self, text: str, code: int = 451, enhanced: str | None = "4.3.0") -> None:
        super().__init__(code, enhanced, text)


class PermanentError(SMTPError):
    """A 5xx refusal (default 554 5.3.0)."""

    def __init__(self, text: str, code: int = 554, enhanced: str | None = "5.3.0") -> None:
        super().__init__(code, enhanced, text)


class PluginFailure(TemporaryError):
    """A plugin raised an unexpected exception or ran past its time bound.

    Always temporary: a broken plugin must never lose or bounce mail.
    """

    def __init__(self, plugin: str, hook: str, what: str) -> None:
        self.plugin = plugin
        self.hook = hook
        super().__init__(f"plugin {plugin!r} failed in {hook}: {what}")


class ConfigError(Exception):
    """Configuration that cannot be used; the message names file, key path and expectation."""


def required(part: T | None, missing: str) -> T:
    """``part`` when it is there, else ``RuntimeError(missing)``.

    For the parts that exist only once something is open: called by the properties that hand
    them out (the gateway's queue, runtime, scheduler and reloader; the console's control and queue).
    """
    if part is None:
        raise RuntimeError(missing)
    return part
