"""The outbound error vocabulary: one exception, and every client-side failure mapped to its reply here.

``OutboundError`` is what the outbound stack raises when a server cannot be
used: it carries the ``Reply`` that stands for the failure (what the recipients
get when nothing better comes) and whether the next host may be tried.
"""

from __future__ import annotations

import ssl

import aiosmtplib

from mailpipe.core.errors import Reply


class OutboundError(Exception):
    """A server could not be used; ``reply`` says why.

    ``next_host`` is true when another host (the next MX host, the next
    smarthost server) may still take the mail, false when trying elsewhere
    would not help (a rejected login). ``host`` names the server, when known.
    """

    def __init__(self, reply: Reply, *, host: str | None = None, next_host: bool = True) -> None:
        super().__init__(str(reply))
        self.reply = reply
        self.host = host
        self.next_host = next_host


def reply_for(exc: BaseException, step: str, host: str) -> Reply:
    """The reply that stands for a failure at ``step`` (connect, greeting, EHLO, STARTTLS, MAIL FROM, ...)."""
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        step = "greeting" if isinstance(exc, aiosmtplib.SMTPConnectResponseError) else step
        r = Reply.parse(exc.code, exc.message)
        if exc.code < 400:  # an unexpected positive code where something else was needed
            return Reply(451, "4.5.0", f"unexpected reply from {host} at {step}: {r}")
        return Reply(r.code, r.enhanced, f"{host} said at {step}: {r.text}" if r.text else f"{host} at {step}")
    if isinstance(exc, aiosmtplib.SMTPTimeoutError | TimeoutError):
        return Reply(451, "4.4.2", f"timed out talking to {host} at {step}")
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected):
        return Reply(451, "4.4.2", f"{host} closed the connection at {step}")
    if _certificate_problem(exc):
        return Reply(451, "4.7.5", f"TLS certificate of {host} not trusted: {short(exc)}")
    if isinstance(exc, aiosmtplib.SMTPConnectError | OSError):
        return Reply(451, "4.4.1", f"cannot connect to {host}: {short(exc)}")
    return Reply(451, "4.4.0", f"error talking to {host} at {step}: {type(exc).__name__}: {short(exc)}")


def tls_failed(exc: BaseException, host: str) -> Reply:
    """The STARTTLS handshake with ``host`` failed (untrusted certificate, no common protocol, reset)."""
    if _certificate_problem(exc):
        return reply_for(exc, "STARTTLS", host)
    return Reply(451, "4.7.5", f"TLS handshake with {host} failed: {short(exc)}")


def no_starttls(host: str) -> Reply:
    """``host`` does not offer STARTTLS, which the TLS policy requires (the mail is never sent in clear)."""
    return Reply(451, "4.7.4", f"{host} does not offer STARTTLS, which is required")


def unreachable(name: str, tried: list[str], *, timed_out: bool) -> Reply:
    """No address of ``name`` could be connected to; ``tried`` says what each address did."""
    return Reply(451, "4.4.2" if timed_out else "4.4.1", f"cannot connect to {name}: {'; '.join(tried)}")


def none_usable(failures: list[tuple[str, Reply]], what: str) -> Reply:
    """The outcome when no host would take the mail: always temporary, naming what each host did.

    Like Postfix (``smtp_skip_5xx_greeting``), even a 5xx from a host that
    refused the session only means "not this host": another attempt may find
    one, so the mail is deferred, not bounced.
    """
    if not failures:
        return Reply(451, "4.4.0", f"no {what} to try")
    if len(failures) == 1:
        reply = failures[0][1]
        return reply if reply.temporary else Reply(451, "4.4.0", f"{what} unusable: {reply}")
    text = "; ".join(f"{host}: {reply}" for host, reply in failures)
    return Reply(451, "4.4.1", f"no {what} usable: {text}"[:900])


def short(exc: BaseException) -> str:
    """An exception as one line of at most 300 characters."""
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())[:300]


def _certificate_problem(exc: BaseException) -> bool:
    return isinstance(exc, ssl.SSLError | aiosmtplib.SMTPConnectError) and "CERTIFICATE" in str(exc).upper()
