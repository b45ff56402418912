"""Canonical line ends for message data (the defence against SMTP smuggling).

aiosmtpd ends DATA only at ``<CR><LF>.<CR><LF>``; any bare ``<LF>`` or bare
``<CR>`` left in the content is turned into ``<CR><LF>`` here, like Postfix's
``smtpd_forbid_bare_newline = normalize``. A smuggled ``<LF>.<LF>`` thus stays
content of the one message and is dot-stuffed when relayed: no second message
can appear downstream.
"""

from __future__ import annotations

import re

_BARE = re.compile(rb"\r\n|\r|\n")


def has_bare_line_ends(data: bytes) -> bool:
    """True when ``data`` holds a CR or LF that is not part of a CRLF pair.

    CRLF pairs never overlap, so the data is canonical exactly when its CRs and LFs together are
    twice its CRLF pairs: one ``translate`` that drops them and one ``count`` of the pairs. Measured
    on 100 KB: 0.15 ms, against 0.25 ms for removing the pairs with ``replace`` and looking for what
    is left. It runs at the intake and again before each delivery (``plugins/outbound/data.py``).
    """
    line_end_octets = len(data) - len(data.translate(None, b"\r\n"))
    return line_end_octets != 2 * data.count(b"\r\n")


def normalise_line_ends(data: bytes) -> bytes:
    """Every line end as CRLF; data ends with CRLF."""
    if has_bare_line_ends(data):
        data = _BARE.sub(b"\r\n", data)
    if data and not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data
