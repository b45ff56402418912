"""Signing one message with dkimpy: relaxed/relaxed, a chosen header list with From oversigned.

``sign`` is pure (bytes in, bytes out) and CPU-bound, so the plugin runs it in a worker thread.
Line ends are made CRLF first (what SMTP sends; the intake has done so already for mail it
accepted), so the signature covers exactly the bytes that leave. 8-bit content is signed as it
is: the outbound client never converts it, so the signature survives the trip.
"""

from __future__ import annotations

import re
from email import policy
from email.parser import BytesHeaderParser
from email.utils import getaddresses

import dkim

from .keys import LoadedKey

_LINE_ENDS = re.compile(rb"\r\n|\r|\n")
_TAG = re.compile(r"^\s*([a-z]+)\s*=\s*(.*?)\s*$", re.IGNORECASE | re.DOTALL)


def crlf(data: bytes) -> bytes:
    """Every line end as CRLF."""
    if data.count(b"\r") == data.count(b"\n") == data.count(b"\r\n"):
        return data
    return _LINE_ENDS.sub(b"\r\n", data)


def header_block(data: bytes) -> bytes:
    """The header section of ``data`` (up to the first empty line)."""
    end = data.find(b"\r\n\r\n")
    return data if end < 0 else data[: end + 2]


def header_names(block: bytes) -> list[str]:
    """The names of the header fields in ``block``, lower case, top to bottom."""
    return [line.split(b":", 1)[0].strip().decode("ascii", "replace").lower()
            for line in block.split(b"\r\n") if line and line[:1] not in (b" ", b"\t") and b":" in line]


def from_domain(block: bytes) -> str | None:
    """The domain of the first address in the From header field, lower case (None when there is none)."""
    parsed = BytesHeaderParser(policy=policy.compat32).parsebytes(block)
    values = parsed.get_all("From") or []
    for _name, address in getaddresses([str(v) for v in values]):
        domain = address.rpartition("@")[2].strip().lower().rstrip(".")
        if "@" in address and domain:
            return domain
    return None


def existing_signatures(block: bytes) -> set[tuple[str, str]]:
    """``(d, s)`` of every DKIM-Signature already in ``block`` (lower case)."""
    parsed = BytesHeaderParser(policy=policy.compat32).parsebytes(block)
    found = set()
    for value in parsed.get_all("DKIM-Signature") or []:
        tags = {}
        for part in str(value).split(";"):
            m = _TAG.match(part)
            if m:
                tags[m.group(1).lower()] = re.sub(r"\s+", "", m.group(2)).lower()
        if "d" in tags and "s" in tags:
            found.add((tags["d"], tags["s"]))
    return found


def signed_headers(present: list[str], headers: list[str], oversign: list[str]) -> list[bytes]:
    """The ``h=`` list: each name of ``headers`` as often as it occurs, names of ``oversign`` once more."""
    out: list[bytes] = []
    for name in headers:
        times = present.count(name) + (1 if name in oversign else 0)
        out += [name.encode()] * times
    return out


def sign(data: bytes, keys: list[LoadedKey], headers: list[str], oversign: list[str]) -> tuple[bytes, list[str]]:
    """``data`` (CRLF line ends) with one DKIM-Signature per key prepended; and the keys that signed.

    A key whose domain and selector already signed the message is skipped (never signed twice).
    Raises ``dkim.DKIMException`` for a message dkimpy cannot sign.
    """
    data = crlf(data)
    block = header_block(data)
    done = existing_signatures(block)
    wanted = [k for k in keys if (k.domain, k.selector.lower()) not in done]
    if not wanted:
        return data, []
    include = signed_headers(header_names(block), headers, oversign)
    signatures = b""
    for key in wanted:
        signatures += dkim.sign(data, key.selector.encode(), key.domain.encode(), key.private,
                                canonicalize=(b"relaxed", b"relaxed"), include_headers=include,
                                signature_algorithm=key.algorithm.encode(), linesep=b"\r\n")
    return signatures + data, [key.name for key in wanted]
