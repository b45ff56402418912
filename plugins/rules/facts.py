"""What the rules look at in a message, read only as far as the rules need it.

``Facts`` is built from the envelope, the session and the message bytes. Header fields and
the MIME structure are parsed on first use with the stdlib ``email`` package: header values
unfolded and RFC 2047-decoded; attachment names (``filename``/``name``, RFC 2231 too) and
content types of every part of the MIME tree. Hostile structures are bounded: a message with
more multipart boundaries than ``max_parts`` (deep nesting makes the stdlib parser slow and
finally recursive) is not parsed as a tree; its part headers are then read line by line, which
finds the same names and types in linear time. ``notes`` says when that happened.
"""

from __future__ import annotations

import email
import email.errors
import email.header
import email.utils
import ipaddress
import re
from dataclasses import dataclass, field
from email import policy
from email.message import Message as EmailMessage
from email.parser import BytesHeaderParser
from typing import Any

_BOUNDARY = re.compile(rb"boundary\s*=", re.IGNORECASE)
_PART_HEADER = re.compile(rb"^content-(type|disposition)\s*:(.*(?:\r?\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE)
_NAME_PARAM = re.compile(r"""(?:^|;)\s*(?:file)?name\*?(?:\*\d+\*?)?\s*=\s*("([^"]*)"|[^;\s]+)""", re.IGNORECASE)
MAX_HEADER_TEXT = 1 << 20  # the header section read for header matches (1 MiB; a longer one is cut)
QUICK_SIZE = 256 * 1024  # this small, with few MIME boundaries: parsed in a few milliseconds at most
QUICK_BOUNDARIES = 16


def quick(data: bytes) -> bool:
    """Whether parsing ``data`` costs so little that a worker thread would cost more (small, simple MIME)."""
    return len(data) <= QUICK_SIZE and sum(1 for _ in _BOUNDARY.finditer(data)) <= QUICK_BOUNDARIES


def header_text(value: str) -> str:
    """A header value as people read it: unfolded, RFC 2047 encoded-words decoded."""
    value = value.replace("\r\n", "").replace("\n", "")
    if "=?" not in value:
        return value.strip()
    try:
        return str(email.header.make_header(email.header.decode_header(value))).strip()
    except (ValueError, LookupError, UnicodeError, email.errors.HeaderParseError):
        return value.strip()


@dataclass
class Facts:
    """One message as the rules see it; ``recipients`` are the envelope recipients being matched."""

    sender: str
    recipients: list[str]
    size: int
    peer: str | None = None
    auth_user: str | None = None
    data: bytes | None = None
    max_parts: int = 200
    notes: list[str] = field(default_factory=list)
    _parsed: dict[str, Any] = field(default_factory=dict)  # shared by the copies of ``for_recipient``

    def for_recipient(self, recipient: str) -> Facts:
        """The same message, matched for one recipient (what ``route`` asks per recipient); parsed once."""
        return Facts(self.sender, [recipient], self.size, self.peer, self.auth_user, self.data, self.max_parts,
                     self.notes, self._parsed)

    # -- the session --------------------------------------------------------------------------

    def client_in(self, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
        """Whether the SMTP client's address is in one of ``networks``."""
        if not self.peer:
            return False
        try:
            ip = ipaddress.ip_address(self.peer)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        return any(ip in net for net in networks)

    # -- header fields ---------------------------------------------------------------------------

    @property
    def headers(self) -> dict[str, list[str]]:
        """Lower-case field name -> its values (decoded), in order."""
        if "headers" not in self._parsed:
            headers: dict[str, list[str]] = self._parsed.setdefault("headers", {})
            if self.data:
                end = self.data.find(b"\r\n\r\n")
                head = self.data[: end + 2 if end >= 0 else MAX_HEADER_TEXT][:MAX_HEADER_TEXT]
                if len(head) == MAX_HEADER_TEXT:
                    self.notes.append("header section longer than 1 MiB: only its first 1 MiB was matched")
                parsed = BytesHeaderParser(policy=policy.compat32).parsebytes(head)
                for name, value in parsed.items():
                    headers.setdefault(name.lower(), []).append(header_text(str(value)))
        return self._parsed["headers"]

    # -- the MIME tree ------------------------------------------------------------------------

    @property
    def attachment_names(self) -> list[str]:
        """File names of the message's MIME parts."""
        return self._walk()[0]

    @property
    def content_types(self) -> list[str]:
        """Content types of the message and all its MIME parts (lower case)."""
        return self._walk()[1]

    def _walk(self) -> tuple[list[str], list[str]]:
        if "parts" not in self._parsed:
            data = self.data or b""
            boundaries = sum(1 for _ in _BOUNDARY.finditer(data))
            if boundaries > self.max_parts:
                self.notes.append(f"{boundaries} multipart boundaries (more than {self.max_parts}): part headers "
                                  "read line by line instead of walking the MIME tree")
                self._parsed["parts"] = _scan_lines(data)
            else:
                try:
                    tree = email.message_from_bytes(data, policy=policy.compat32)
                    self._parsed["parts"] = _walk_tree(tree, self.max_parts)
                except RecursionError:
                    self.notes.append("MIME tree too deep for the parser: part headers read line by line")
                    self._parsed["parts"] = _scan_lines(data)
        parts: tuple[list[str], list[str]] = self._parsed["parts"]
        return parts


def _walk_tree(root: EmailMessage, max_parts: int) -> tuple[list[str], list[str]]:
    """Names and types of the parts, walked without recursion, at most ``max_parts`` parts."""
    names: list[str] = []
    types: list[str] = []
    stack = [root]
    seen = 0
    while stack and seen < max_parts:
        part = stack.pop()
        seen += 1
        types.append(part.get_content_type().lower())
        name = part.get_filename() or part.get_param("name")
        if isinstance(name, tuple):  # an RFC 2231 value (charset, language, text)
            name = email.utils.collapse_rfc2231_value(name)
        if name:
            names.append(header_text(str(name)))
        payload = part.get_payload()
        if part.is_multipart() and isinstance(payload, list):
            stack.extend(reversed(payload))
    return names, types


def _scan_lines(data: bytes) -> tuple[list[str], list[str]]:
    """Names and types from every Content-Type/Content-Disposition line of ``data``: linear, no tree."""
    names: list[str] = []
    types: list[str] = []
    for m in _PART_HEADER.finditer(data):
        value = header_text(m.group(2).decode("utf-8", "replace"))
        if m.group(1).lower() == b"type":
            types.append(value.split(";", 1)[0].strip().lower())
        for p in _NAME_PARAM.finditer(value):
            names.append(p.group(2) if p.group(2) is not None else p.group(1))
    return names, types
