"""A client for clamd's ``INSTREAM`` command over its Unix socket or TCP, with asyncio.

``zINSTREAM\\0``, then the message in chunks (a 4-byte big-endian length, the bytes), then a
zero length; clamd answers ``stream: OK``, ``stream: NAME FOUND`` or ``... ERROR``, ended by
a NUL byte. The whole exchange (connect included) is bounded by one time-out, so a clamd that
hangs costs at most that long; anything but a clear answer is a ``ClamdError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from dataclasses import dataclass

CHUNK = 64 * 1024
MAX_REPLY = 4096


class ClamdError(Exception):
    """clamd could not give an answer: unreachable, too slow, or it reported an error (text says which)."""


@dataclass(frozen=True)
class Verdict:
    """clamd's answer: ``virus`` is the signature name when something was found, None when clean."""

    virus: str | None
    reply: str

    @property
    def clean(self) -> bool:
        return self.virus is None


@dataclass(frozen=True)
class Clamd:
    """Where clamd listens (``socket`` path, or ``host``/``port``) and how long a scan may take."""

    socket: str | None = None
    host: str | None = None
    port: int | None = None
    timeout: float = 30.0

    @property
    def where(self) -> str:
        return self.socket if self.socket else f"{self.host}:{self.port}"

    async def scan(self, data: bytes) -> Verdict:
        """Scan ``data`` with INSTREAM; ``ClamdError`` when no answer came within the time-out."""
        try:
            async with asyncio.timeout(self.timeout):
                return await self._scan(data)
        except TimeoutError:
            raise ClamdError(f"clamd at {self.where} did not answer within {self.timeout:g}s") from None
        except OSError as exc:
            raise ClamdError(f"cannot reach clamd at {self.where}: {exc.strerror or exc}") from None

    async def ping(self) -> bool:
        """Whether clamd answers ``PING`` within the time-out."""
        try:
            async with asyncio.timeout(self.timeout):
                reader, writer = await self._connect()
                try:
                    writer.write(b"zPING\0")
                    await writer.drain()
                    return (await reader.readuntil(b"\0")).rstrip(b"\0") == b"PONG"
                finally:
                    writer.close()
        except (TimeoutError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return False

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.socket:
            return await asyncio.open_unix_connection(self.socket, limit=MAX_REPLY)
        return await asyncio.open_connection(self.host, self.port, limit=MAX_REPLY)

    async def _scan(self, data: bytes) -> Verdict:
        reader, writer = await self._connect()
        try:
            try:
                writer.write(b"zINSTREAM\0")
                view = memoryview(data)
                for start in range(0, len(data), CHUNK):
                    chunk = view[start:start + CHUNK]
                    writer.write(struct.pack(">I", len(chunk)))
                    writer.write(chunk)
                    await writer.drain()
                writer.write(struct.pack(">I", 0))
                await writer.drain()
            except (ConnectionResetError, BrokenPipeError):
                pass  # clamd stopped reading (a size limit): its reply says why
            try:
                raw = await reader.readuntil(b"\0")
            except asyncio.IncompleteReadError as exc:
                raw = exc.partial
            except asyncio.LimitOverrunError:
                raise ClamdError(f"clamd at {self.where} sent an overlong reply") from None
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        return parse(raw.rstrip(b"\0").decode("utf-8", "replace").strip(), self.where)


def parse(reply: str, where: str) -> Verdict:
    """``stream: OK`` -> clean; ``stream: NAME FOUND`` -> virus NAME; anything else -> ``ClamdError``."""
    if not reply:
        raise ClamdError(f"clamd at {where} closed the connection without an answer")
    _, _, result = reply.partition(": ")
    result = result or reply
    if result == "OK":
        return Verdict(None, reply)
    if result.endswith(" FOUND"):
        return Verdict(result[: -len(" FOUND")].strip() or "unknown", reply)
    raise ClamdError(f"clamd at {where} answered: {reply[:200]}")
