"""Commands written together and their replies read in order (RFC 2920 PIPELINING), on an aiosmtplib client.

aiosmtplib reads one reply per command it wrote, and its protocol drops bytes that arrive
while a parsed reply waits to be picked up: with replies to several commands in one segment
(what a pipelining server sends) it would lose them. So for one transaction ``Pipeline``
puts its own small reader on the client's transport (``transport.set_protocol``), keeps every
byte, hands out the replies in order, and puts aiosmtplib's protocol back afterwards. Losing
the connection meanwhile is passed on to aiosmtplib's protocol, so the client knows it is closed.

Called by ``transaction.send`` when the server offers PIPELINING.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any

import aiosmtplib
from aiosmtplib.response import SMTPResponse
from aiosmtplib.typing import SMTPStatus

MAX_LINE = 8192
"""Longest reply line taken (aiosmtplib's own limit)."""
MAX_PENDING = MAX_LINE * 4
"""Most bytes of one unfinished reply kept (aiosmtplib's own limit)."""
MAX_UNREAD = 1000
"""Most replies kept that nobody has asked for yet (a server flooding replies is cut off)."""
INVALID = SMTPStatus.invalid_response.value
"""The code aiosmtplib gives a reply that is not SMTP (mapped to a temporary failure)."""


class _Reader(asyncio.BaseProtocol):
    """The transport's protocol while a ``Pipeline`` reads: every reply kept, in order."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.buffer = bytearray()
        self.replies: collections.deque[SMTPResponse] = collections.deque()
        self.error: Exception | None = None  # what ended the reading (lost connection, malformed reply)
        self.lost = False
        self.received = False
        self.wake: asyncio.Future[None] | None = None

    def data_received(self, data: bytes) -> None:
        self.received = True
        if self.error is not None:
            return  # out of step already: nothing more is read
        self.buffer += data
        try:
            self._parse()
        except aiosmtplib.SMTPResponseException as exc:
            self.error = exc
        self._wake()

    def eof_received(self) -> bool:
        self.error = self.error or aiosmtplib.SMTPServerDisconnected("Unexpected EOF received")
        self._wake()
        return False  # the transport closes, connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.error is None:
            error = aiosmtplib.SMTPServerDisconnected("Connection lost")
            error.__cause__ = exc
            self.error = error
        self._wake()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def _wake(self) -> None:
        if self.wake is not None and not self.wake.done():
            self.wake.set_result(None)

    def _parse(self) -> None:
        buf = self.buffer
        while True:
            offset, lines, complete = 0, [], False
            while (end := buf.find(b"\n", offset)) != -1:
                line = bytes(buf[offset:end + 1])
                if len(line) > MAX_LINE:
                    raise aiosmtplib.SMTPResponseException(INVALID, "Response too long")
                try:
                    code = int(line[:3])
                except ValueError:
                    text = line.decode("utf-8", errors="ignore")
                    raise aiosmtplib.SMTPResponseException(INVALID, f"Malformed SMTP response line: {text}") from None
                offset = end + 1
                lines.append(line[4:].strip(b" \t\r\n"))
                if line[3:4] != b"-":
                    complete = True
                    break
            if not complete:
                if len(buf) > MAX_PENDING:
                    raise aiosmtplib.SMTPResponseException(INVALID, "Response too long")
                return
            self.replies.append(SMTPResponse(code, b"\n".join(lines).decode("utf-8", "surrogateescape")))
            del buf[:offset]
            if len(self.replies) > MAX_UNREAD:
                raise aiosmtplib.SMTPResponseException(INVALID, "Too many replies")


class Pipeline:
    """Several commands in one write, their replies one by one: ``with Pipeline(client) as p``.

    ``write`` sends bytes as they are; ``reply`` waits (up to the client's timeout) for the
    next reply and raises as aiosmtplib does: ``SMTPServerDisconnected`` when the connection
    ended first, ``SMTPReadTimeoutError`` on the timeout (the client is closed then: the
    session is out of step), ``SMTPResponseException`` for a reply that is not SMTP.
    ``received`` says whether any byte came back at all (a kept session the server had
    closed while it was idle answers nothing).
    """

    def __init__(self, client: aiosmtplib.SMTP) -> None:
        self.client = client
        self._protocol = client.protocol
        self._reader: _Reader | None = None

    @property
    def received(self) -> bool:
        """Whether any byte of a reply arrived."""
        return self._reader is not None and self._reader.received

    def __enter__(self) -> Pipeline:
        protocol = self._protocol
        if protocol is None or protocol.transport is None or protocol.transport.is_closing():
            raise aiosmtplib.SMTPServerDisconnected("Connection lost")
        self._reader = _Reader(protocol)
        protocol.transport.set_protocol(self._reader)  # type: ignore[arg-type]
        return self

    def __exit__(self, *exc: object) -> None:
        reader, protocol = self._reader, self._protocol
        if reader is None or protocol is None:
            return
        if reader.lost:
            if protocol.transport is not None:
                protocol.connection_lost(None)
        elif protocol.transport is not None:
            protocol.transport.set_protocol(protocol)
            if reader.buffer or reader.replies or reader.error is not None:
                self.client.close()  # replies nobody asked for, or a broken one: out of step

    def write(self, data: bytes) -> None:
        """Send ``data`` (whole command lines, or the message) as one write."""
        transport = self._protocol.transport if self._protocol is not None else None
        if transport is None or transport.is_closing() or (self._reader is not None and self._reader.lost):
            raise aiosmtplib.SMTPServerDisconnected("Connection lost")
        transport.write(data)

    async def reply(self, timeout: float | None = None) -> SMTPResponse:
        """The next reply, waiting up to ``timeout`` (default: the client's); see the class text for what it raises."""
        reader = self._reader
        assert reader is not None, "use Pipeline as a context manager"
        if reader.replies:
            return reader.replies.popleft()
        loop = asyncio.get_running_loop()
        limit = self.client.timeout if timeout is None else timeout
        deadline = None if limit is None else loop.time() + limit
        while not reader.replies:
            if reader.error is not None:
                raise reader.error
            reader.wake = loop.create_future()
            try:
                async with asyncio.timeout_at(deadline):
                    await reader.wake
            except TimeoutError:
                self.client.close()
                raise aiosmtplib.SMTPReadTimeoutError("Timed out waiting for server response") from None
            finally:
                reader.wake = None
        return reader.replies.popleft()
