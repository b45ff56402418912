"""Reading a collected message's header: envelope sender, recipients (single drop or multidrop), loop marks.

Multidrop follows fetchmail's lessons. The envelope headers an ISP writes
(``Delivered-To``, ``X-Original-To``, ``Envelope-To``, ``X-Envelope-To``) say for whom
*this copy* was delivered: when one of the configured headers of that kind names an
address of the office's domains, those addresses alone are the recipients (a message to
two people that arrives as two copies is then not delivered twice to each). Otherwise
the addresses of the other configured headers (``To``, ``Cc``, ...) of those domains are.
Addresses are compared without case and each is taken once; a message with none goes to
``default``. A header that cannot be read at all is not an error: the message goes to
``default`` (or ``deliver_to``) as it is.
"""

from __future__ import annotations

import email.policy
import re
from email.message import Message as EmailMessage
from email.parser import BytesHeaderParser
from email.utils import getaddresses, parseaddr

from ..settings import CollectSettings

ENVELOPE_HEADERS = frozenset({"delivered-to", "x-original-to", "envelope-to", "x-envelope-to"})


def read_header(data: bytes) -> EmailMessage | None:
    """The parsed header fields of ``data``, or None when they cannot be parsed at all."""
    try:
        return BytesHeaderParser(policy=email.policy.compat32).parsebytes(data)
    except Exception:  # noqa: BLE001 - any parser failure means "unparseable", never a lost message
        return None


def values(header: EmailMessage, name: str) -> list[str]:
    """Every value of header field ``name`` as text (undecodable bytes kept as escapes)."""
    try:
        return [str(v) for v in header.get_all(name) or []]
    except Exception:  # noqa: BLE001
        return []


def _plain(address: str) -> str | None:
    """``address`` if it is a usable envelope address (ASCII, local@domain, no spaces or controls)."""
    address = address.strip()
    if not address or not address.isascii() or "@" not in address:
        return None
    if any(c.isspace() or ord(c) < 32 or c in "<>()[]\\,;:\"" for c in address):
        return None
    local, _, domain = address.rpartition("@")
    return address if local and domain else None


def envelope_sender(header: EmailMessage | None) -> str:
    """The first ``Return-Path`` as the envelope sender; ``""`` (the null sender) when there is none usable."""
    if header is None:
        return ""
    for value in values(header, "Return-Path")[:1]:
        _, address = parseaddr(value)
        return _plain(address) or ""
    return ""


def addresses(header: EmailMessage, names: list[str]) -> list[str]:
    """The usable addresses of the header fields ``names``, in order."""
    found: list[str] = []
    for name in names:
        for _, address in getaddresses(values(header, name)):
            plain = _plain(address)
            if plain:
                found.append(plain)
    return found


def recipients(collect: CollectSettings, header: EmailMessage | None) -> list[str]:
    """Who a collected message is for: ``deliver_to``, or the multidrop recipients (see the module text)."""
    if collect.deliver_to is not None:
        return [collect.deliver_to]
    spec = collect.distribute
    assert spec is not None
    if header is None:
        return [spec.default]
    domains = set(spec.domains)

    def local(found: list[str]) -> list[str]:
        """The addresses of ``domains`` in ``found``, each once (compared without case), in order."""
        seen: dict[str, str] = {}
        for address in found:
            if address.rpartition("@")[2].lower() in domains:
                seen.setdefault(address.lower(), address)
        return list(seen.values())

    envelope = local(addresses(header, [h for h in spec.headers if h.lower() in ENVELOPE_HEADERS]))
    if envelope:
        return envelope
    return local(addresses(header, [h for h in spec.headers if h.lower() not in ENVELOPE_HEADERS])) or [spec.default]


def loop_reason(header: EmailMessage | None, *, mailbox: str, hostname: str, max_hops: int) -> str | None:
    """Why the message looks like a mail loop (None when it does not).

    A loop when it carries this collector's own marks for this mailbox (the ``X-Loop``
    field, or a ``Received`` field written when it was collected from it here before), or
    more ``Received`` fields than ``max_hops``.
    """
    if header is None:
        return None
    received = values(header, "Received")
    if len(received) > max_hops:
        return f"it has {len(received)} Received fields, more than max_hops ({max_hops})"
    if any(v.strip().lower() == mailbox.lower() for v in values(header, "X-Loop")):
        return f"it carries this gateway's X-Loop mark for {mailbox}: it was collected from this mailbox before"
    mark = re.compile(rf"\bby\s+{re.escape(hostname)}\s+\(mailpipe\)\s+with\s+POP3S?\b.*\(mailbox\s+"
                      rf"{re.escape(mailbox)}\)", re.IGNORECASE | re.DOTALL)
    if any(mark.search(v) for v in received):
        return f"it carries this gateway's Received field for {mailbox}: it was collected from this mailbox before"
    return None


def summary(header: EmailMessage | None) -> dict[str, str]:
    """From, Subject and Message-ID for logs and the dry run (empty strings when missing or unreadable)."""
    if header is None:
        return {"from": "", "subject": "", "message_id": ""}

    def first(name: str) -> str:
        """The first value of ``name`` on one line, at most 200 characters."""
        found = values(header, name)
        return " ".join(found[0].split())[:200] if found else ""

    return {"from": first("From"), "subject": first("Subject"), "message_id": first("Message-ID")}
