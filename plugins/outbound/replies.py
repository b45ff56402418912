"""The outbound error vocabulary: one exception, and every client-side failure mapped to its reply here.

``OutboundError`` is what the outbound stack raises when a server cannot be
used: it carries the ``Reply`` that stands for the failure (what the recipients
get when nothing better comes) and whether the next host may be tried.
``Scrubber`` takes out of a server's reply text every form of the secrets the
client sent (a server may echo an AUTH argument in its 535).
"""

from __future__ import annotations

import base64
import binascii
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


MIN_FORM = 3
"""Shorter forms of a secret are not scrubbed (they would blank out ordinary words of a reply)."""


def _base64_cores(secret: bytes) -> set[str]:
    """The base64 text of ``secret`` as it appears inside the base64 of *any* longer blob.

    Base64 works in groups of three bytes, so a secret at offset 0, 1 or 2 (mod 3) of a blob
    shows as one of three texts; the characters that also depend on neighbouring bytes are
    left out. A server echoing ``AUTH PLAIN`` (``\\0user\\0password``) or an XOAUTH2 blob
    (``user=...\\x01auth=Bearer TOKEN\\x01\\x01``) in base64 thus shows one of them.
    """
    cores = set()
    for offset in range(3):
        text = base64.b64encode(b"\0" * offset + secret).decode()
        start = -(-offset * 8 // 6)  # characters holding bits of the padding before the secret
        end = (offset + len(secret)) * 8 // 6  # characters made only of the secret's own bits
        cores.add(text[start:end])
    return cores


class Scrubber:
    """Replaces every form of the client's secrets in a text with ``***``; call it on reply text.

    ``add_secret`` takes a password or token (scrubbed as itself, and in base64 at any
    position of a larger blob); ``add_blob`` takes a base64 SASL response exactly as it was
    sent (scrubbed as sent, and decoded).
    """

    def __init__(self, secrets: list[str] | None = None) -> None:
        self._forms: set[str] = set()
        for secret in secrets or []:
            self.add_secret(secret)

    def add_secret(self, secret: str | bytes) -> None:
        """Scrub ``secret`` itself and its base64 forms."""
        raw = secret.encode() if isinstance(secret, str) else secret
        if not raw:
            return
        self._forms.add(raw.decode("utf-8", "replace"))
        self._forms.update(_base64_cores(raw))

    def add_blob(self, blob: bytes) -> None:
        """Scrub a base64 SASL response the client sent, as sent and decoded."""
        self._forms.add(blob.decode("ascii", "replace"))
        try:
            self._forms.add(base64.b64decode(blob, validate=True).decode("utf-8", "replace"))
        except (binascii.Error, ValueError):
            pass

    def __call__(self, text: str) -> str:
        for form in sorted(self._forms, key=len, reverse=True):  # a whole blob before the parts inside it
            if len(form) >= MIN_FORM:
                text = text.replace(form, "***")
        return text


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
