"""Turning client-side failures (aiosmtplib exceptions, socket errors) into SMTP replies."""

from __future__ import annotations

import ssl

import aiosmtplib

from mailpipe.core.errors import Reply


def reply_for(exc: BaseException, step: str, host: str) -> Reply:
    """The reply that stands for a failure at ``step`` (connect, greeting, ehlo, starttls, auth, ...)."""
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        r = Reply.parse(exc.code, exc.message)
        if exc.code < 400:  # an unexpected positive code where something else was needed
            return Reply(451, "4.5.0", f"unexpected reply from {host} at {step}: {r}")
        return Reply(r.code, r.enhanced, f"{host} said at {step}: {r.text}" if r.text else f"{host} at {step}")
    if isinstance(exc, aiosmtplib.SMTPTimeoutError | TimeoutError):
        return Reply(451, "4.4.2", f"timed out talking to {host} at {step}")
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected):
        return Reply(451, "4.4.2", f"{host} closed the connection at {step}")
    if isinstance(exc, ssl.SSLError | aiosmtplib.SMTPConnectError) and "CERTIFICATE" in str(exc).upper():
        return Reply(451, "4.7.5", f"TLS certificate of {host} not trusted: {_short(exc)}")
    if isinstance(exc, aiosmtplib.SMTPConnectError | OSError):
        return Reply(451, "4.4.1", f"cannot connect to {host}: {_short(exc)}")
    return Reply(451, "4.4.0", f"error talking to {host} at {step}: {type(exc).__name__}: {_short(exc)}")


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())[:300]
