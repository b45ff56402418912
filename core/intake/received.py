"""The Received: trace header (RFC 5321 section 4.4)."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime
from functools import lru_cache

from ..message import SessionInfo


def protocol(session: SessionInfo, esmtp: bool) -> str:
    """The ``with`` keyword: SMTP, ESMTP, ESMTPS, ESMTPA, ESMTPSA (UTF8SMTP* with SMTPUTF8; RFC 3848/6531)."""
    if not esmtp:
        return "SMTP"
    word = "UTF8SMTP" if session.smtputf8 else "ESMTP"
    return word + ("S" if session.tls else "") + ("A" if session.auth_user else "")


def received_header(
    session: SessionInfo, hostname: str, queue_id: str, recipients: list[str], now: float, esmtp: bool = True
) -> bytes:
    """``Received: from HELO ([addr]) by HOST (mailpipe) with ESMTPS id ID for <rcpt>; date`` as folded bytes."""
    helo = session.helo or "unknown"
    addr = session.peer
    literal = f"IPv6:{addr}" if ":" in addr else addr
    lines = [f"Received: from {_clean(helo)} ([{literal}])"]
    by = f"by {hostname} (mailpipe) with {protocol(session, esmtp)} id {queue_id}"
    if len(recipients) == 1:
        by += f"\r\n\tfor <{_clean(recipients[0])}>"
    lines.append(f"\t{by};")
    lines.append(f"\t{date_of(int(now))}")
    return ("\r\n".join(lines) + "\r\n").encode("utf-8", "surrogateescape")


@lru_cache(maxsize=4)
def date_of(second: int) -> str:
    """The RFC 5322 date of a Unix second (``Mon, 30 Nov 2026 19:00:07 +0000``); kept for the few seconds
    in which most messages arrive."""
    return format_datetime(datetime.fromtimestamp(second, UTC))


def _clean(text: str) -> str:
    """Keep a client-chosen word from breaking the header (no spaces, controls or parentheses)."""
    return "".join(c for c in text if c.isprintable() and c not in " ()<>;\\\"")[:255] or "unknown"


def collected_header(*, server: str, addr: str, tls: bool, mailbox: str, hostname: str, queue_id: str,
                     recipients: list[str], now: float) -> bytes:
    """The Received: header of a message collected from a POP3 mailbox (written by the collector).

    ``Received: from SERVER ([addr]) by HOST (mailpipe) with POP3[S] id ID (mailbox ADDRESS) for <rcpt>; date``:
    the POP3 server it came from, and the mailbox, which is also the collector's loop mark.
    """
    literal = f"IPv6:{addr}" if ":" in addr else addr
    lines = [f"Received: from {_clean(server)} ([{literal}])",
             f"\tby {hostname} (mailpipe) with POP3{'S' if tls else ''} id {queue_id}",
             f"\t(mailbox {_clean(mailbox)})"]
    if len(recipients) == 1:
        lines.append(f"\tfor <{_clean(recipients[0])}>;")
    else:
        lines[-1] += ";"
    lines.append(f"\t{date_of(int(now))}")
    return ("\r\n".join(lines) + "\r\n").encode("utf-8", "surrogateescape")
