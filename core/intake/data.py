"""Reading the DATA phase in large chunks instead of line by line.

aiosmtpd reads message data one line at a time (``readuntil``), which costs
more CPU than anything else at the intake for larger messages. This reader
takes what the socket has (64 KB at a time), looks for the end-of-data
sequence, and then removes dot-stuffing in one pass. The rules are aiosmtpd's
(and RFC 5321's): only ``<CR><LF>.<CR><LF>`` ends the data (so SMTP smuggling
sequences with bare CR or LF stay content); a line longer than 1,000 octets or
data over the size limit is refused after the final dot, and what was read
beyond it is discarded, never kept in memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

END = b"\r\n.\r\n"
CHUNK = 65536
MAX_LINE = 1000  # octets of a line without its CRLF: one more is refused (RFC 5321 allows 998 + CRLF)
_STEP = MAX_LINE // 2
_WINDOW = MAX_LINE + 1 - _STEP
# Any run of MAX_LINE + 1 octets holds a whole window [k * _STEP, k * _STEP + _WINDOW): when every whole
# window holds an LF, no line is too long (see has_long_line).


@dataclass
class DataResult:
    """The message bytes (dot-stuffing removed), or the reply refusing them."""

    content: bytes | None
    error: str | None = None


async def read_data(
    reader: asyncio.StreamReader, *, size_limit: int | None, on_progress: Callable[[], None]
) -> DataResult | None:
    """Read up to and including the end-of-data line; None when the client went away.

    Bytes after the end-of-data line (pipelined commands) are left in the reader.
    ``on_progress`` is called for every chunk (the idle timer restarts while data flows).
    """
    # The reader's limit (aiosmtpd sets it to the line length limit) also drives its flow control:
    # with ~1 KB the transport is paused and resumed for every couple of KB. Widen it for DATA.
    saved_limit = reader._limit  # type: ignore[attr-defined]
    reader._limit = max(saved_limit, 4 * CHUNK)  # type: ignore[attr-defined]
    try:
        return await _read(reader, size_limit, on_progress)
    finally:
        reader._limit = saved_limit  # type: ignore[attr-defined]


async def _read(
    reader: asyncio.StreamReader, size_limit: int | None, on_progress: Callable[[], None]
) -> DataResult | None:
    buf = bytearray()
    discarded = 0
    while True:
        start = max(0, len(buf) - len(END) + 1)
        chunk = await reader.read(CHUNK)
        if not chunk:
            return None
        on_progress()
        buf += chunk
        if not discarded and buf[:3] == b".\r\n":  # no content at all: the first line is the lone dot
            end, content_end = 3, 0
            break
        found = buf.find(END, start)
        if found >= 0:
            end, content_end = found + len(END), found + 2
            break
        if size_limit and len(buf) + discarded > size_limit + len(END):
            keep = len(END) - 1  # enough to see an end-of-data split across two chunks
            discarded += len(buf) - keep
            del buf[:-keep]
    rest = bytes(buf[end:])
    if rest:
        reader._buffer[0:0] = rest  # type: ignore[attr-defined]  # pipelined commands after the dot
    content = bytes(memoryview(buf)[:content_end])  # one copy (a slice of the bytearray would be a second)
    del buf
    if discarded or (size_limit and len(content) > size_limit):
        return DataResult(None, "552 5.3.4 Error: Too much mail data")
    if has_long_line(content):
        return DataResult(None, "500 5.5.2 Line too long (see RFC5321 4.5.3.1.6)")
    # Dot-stuffing (RFC 5321 4.5.2): every line that starts with a dot loses that one dot.
    content = content.replace(b"\r\n.", b"\r\n")
    if content[:1] == b".":
        content = content[1:]
    return DataResult(content)


def has_long_line(content: bytes) -> bool:
    """Whether a line of ``content`` (up to its LF, the CR included) has more than ``MAX_LINE`` octets.

    Looks for an LF in each window of ``_WINDOW`` octets every ``_STEP`` octets: a line over
    ``MAX_LINE`` would leave one of them without, so when all have one the answer is no, without
    splitting the message into lines (measured: an eighth of the time for 4 KB, half for 100 KB). A window
    without an LF (a long line, or nearly) gets the exact count.
    """
    if len(content) <= MAX_LINE:
        return False
    find = content.find
    for start in range(0, len(content) - _WINDOW + 1, _STEP):
        if find(b"\n", start, start + _WINDOW) < 0:
            return max(map(len, content.split(b"\n"))) > MAX_LINE
    return False
