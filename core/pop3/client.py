"""An asyncio POP3 client (RFC 1939, STLS from RFC 2595, AUTH from RFC 5034): the core's only POP3 code.

Why not ``poplib``: it blocks (every step would need a thread, and a collection cut short by
a shutdown could not be cancelled), it refuses lines longer than 2,048 octets (a message with
one such line could never be collected and would sit in the mailbox for ever), and it has no
``AUTH`` (XOAUTH2). This client reads multi-line answers in chunks, like the SMTP intake's
DATA reader, with a bound on their size instead of on line length.

Every failure is a ``Pop3Error`` whose ``kind`` says where it happened (``connect``,
``tls``, ``login``, ``protocol``) and whose text never contains a secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from dataclasses import dataclass

END = b"\r\n.\r\n"
CHUNK = 65536
STATUS_LIMIT = 4 * CHUNK  # the reader's buffer limit: one status line longer than this is not POP3


class Pop3Error(Exception):
    """A POP3 step failed; ``kind``: connect, tls, login or protocol; ``step``: the command."""

    def __init__(self, text: str, *, kind: str = "protocol", step: str = "") -> None:
        super().__init__(text)
        self.kind = kind
        self.step = step


class Pop3LoginFailed(Pop3Error):
    """The server refused the login (wrong name, password or token); a configuration problem."""

    def __init__(self, text: str, *, step: str = "") -> None:
        super().__init__(text, kind="login", step=step)


class Pop3TooLarge(Pop3Error):
    """A multi-line answer was longer than the caller's limit; it was read to its end and dropped, so the
    session can go on."""

    def __init__(self, text: str, *, step: str = "") -> None:
        super().__init__(text, kind="too_large", step=step)


@dataclass(frozen=True)
class Listed:
    """One message of the mailbox: its number in this session, its unique id (None without UIDL), its size."""

    number: int
    uidl: str | None
    size: int


def _one_line(data: bytes) -> str:
    return " ".join(data.decode("utf-8", "replace").split())[:300]


class Pop3Client:
    """One POP3 connection. ``await Pop3Client.connect(...)``, then the commands, then ``quit``.

    ``tls``: ``implicit`` (POP3S, TLS from the first byte), ``starttls`` (STLS before the
    login; refused if the server cannot) or ``none``. ``context`` checks the certificate.
    ``timeout`` bounds every read and write.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str,
                 timeout: float) -> None:
        self.reader = reader
        self.writer = writer
        self.host = host
        self.timeout = timeout
        self.greeting = ""
        self.tls = writer.get_extra_info("ssl_object") is not None
        self.peer = str((writer.get_extra_info("peername") or ("?",))[0])

    @classmethod
    async def connect(cls, host: str, port: int, *, tls: str, context: ssl.SSLContext | None,
                      timeout: float) -> Pop3Client:
        """Connect (TLS first with ``implicit``), read the greeting, and with ``starttls`` run STLS."""
        step = "connect"
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, ssl=context if tls == "implicit" else None,
                                        server_hostname=host if tls == "implicit" else None, limit=STATUS_LIMIT),
                timeout)
        except ssl.SSLError as exc:
            raise Pop3Error(f"TLS error: {exc.reason or exc}", kind="tls", step="connect") from None
        except TimeoutError:
            raise Pop3Error(f"no connection within {timeout:.0f}s", kind="connect", step=step) from None
        except OSError as exc:
            why = os.strerror(exc.errno) if exc.errno else (exc.strerror or str(exc))
            raise Pop3Error(why, kind="connect", step=step) from None
        client = cls(reader, writer, host, timeout)
        try:
            client.greeting = await client._status("greeting")
            if tls == "starttls":
                await client.starttls(context)
        except BaseException:
            client.close()
            raise
        return client

    # -- the wire ------------------------------------------------------------------------------------

    async def _send(self, line: str, step: str) -> None:
        try:
            self.writer.write(line.encode("utf-8") + b"\r\n")
            await asyncio.wait_for(self.writer.drain(), self.timeout)
        except TimeoutError:
            raise Pop3Error(f"no progress sending {step} within {self.timeout:.0f}s", step=step) from None
        except OSError as exc:
            raise Pop3Error(f"connection lost at {step}: {exc.strerror or exc}", step=step) from None

    async def _line(self, step: str) -> bytes:
        try:
            line = await asyncio.wait_for(self.reader.readuntil(b"\r\n"), self.timeout)
        except TimeoutError:
            raise Pop3Error(f"no answer to {step} within {self.timeout:.0f}s", step=step) from None
        except asyncio.IncompleteReadError:
            raise Pop3Error(f"the server closed the connection at {step}", step=step) from None
        except asyncio.LimitOverrunError:
            raise Pop3Error(f"the answer to {step} is not a POP3 status line", step=step) from None
        except ssl.SSLError as exc:
            raise Pop3Error(f"TLS error at {step}: {exc.reason or exc}", kind="tls", step=step) from None
        except OSError as exc:
            raise Pop3Error(f"connection lost at {step}: {exc.strerror or exc}", step=step) from None
        return line[:-2]

    async def _status(self, step: str) -> str:
        """Read one status line: the text after ``+OK``; ``Pop3Error`` for ``-ERR`` (or garbage)."""
        line = await self._line(step)
        if line.startswith(b"+OK"):
            return line[3:].strip().decode("utf-8", "replace")
        if line.startswith(b"-ERR"):
            raise Pop3Error(f"the server said {_one_line(line)}", step=step)
        raise Pop3Error(f"the answer to {step} is not POP3: {_one_line(line)[:80]}", step=step)

    async def command(self, line: str, step: str | None = None) -> str:
        """Send one command, return the ``+OK`` text; ``Pop3Error`` on ``-ERR``."""
        step = step or line.split(" ", 1)[0].upper()
        await self._send(line, step)
        return await self._status(step)

    async def exchange(self, line: str, step: str) -> bytes:
        """Send one line and return the server's raw answer line (SASL, where ``+ `` asks for more)."""
        await self._send(line, step)
        return await self._line(step)

    async def multiline(self, line: str, *, limit: int, step: str | None = None) -> bytes:
        """Send a command with a multi-line answer; its content with CRLF line ends, dot-stuffing removed.

        ``limit`` bounds the bytes kept: a longer answer is read to its end and dropped
        (``Pop3TooLarge``; the session goes on), one that never ends is cut off (``Pop3Error``).
        """
        step = step or line.split(" ", 1)[0].upper()
        await self._send(line, step)
        await self._status(step)
        return await self._read_multiline(step, limit)

    async def _read_multiline(self, step: str, limit: int) -> bytes:
        buf = bytearray()
        discarded = 0
        while True:
            if not discarded and buf[:3] == b".\r\n":
                content = b""
                break
            found = buf.find(END)
            if found >= 0:
                content = bytes(buf[:found + 2])  # anything after it would be unasked for: no pipelining here
                break
            if len(buf) + discarded > limit:
                # Longer than allowed: read on to the end (so the session stays usable) without keeping it,
                # up to a bound: a server that never ends its answer is cut off.
                if discarded > 4 * limit:
                    raise Pop3Error(f"the answer to {step} does not end (over {discarded} bytes)", step=step)
                keep = len(END) - 1
                discarded += len(buf) - keep
                del buf[:-keep]
            try:
                chunk = await asyncio.wait_for(self.reader.read(CHUNK), self.timeout)
            except TimeoutError:
                raise Pop3Error(f"the answer to {step} stopped for {self.timeout:.0f}s", step=step) from None
            except ssl.SSLError as exc:
                raise Pop3Error(f"TLS error at {step}: {exc.reason or exc}", kind="tls", step=step) from None
            except OSError as exc:
                raise Pop3Error(f"connection lost at {step}: {exc.strerror or exc}", step=step) from None
            if not chunk:
                raise Pop3Error(f"the server closed the connection in the middle of {step}", step=step)
            buf += chunk
        if discarded:
            raise Pop3TooLarge(f"the answer to {step} is longer than {limit} bytes", step=step)
        # Dot-stuffing (RFC 1939 3): a line that starts with a dot got one more; take it away.
        content = content.replace(b"\r\n.", b"\r\n")
        if content[:1] == b".":
            content = content[1:]
        return content

    # -- session steps -------------------------------------------------------------------------------

    async def starttls(self, context: ssl.SSLContext | None) -> None:
        """STLS: refused (kind ``tls``) when the server does not offer it or the handshake fails."""
        try:
            await self.command("STLS")
        except Pop3Error as exc:
            raise Pop3Error(f"STLS refused: {exc}", kind="tls", step="STLS") from None
        try:
            await asyncio.wait_for(self.writer.start_tls(context or ssl.create_default_context(),
                                                         server_hostname=self.host), self.timeout)
        except ssl.SSLError as exc:
            raise Pop3Error(f"TLS error: {exc.reason or exc}", kind="tls", step="STLS") from None
        except (TimeoutError, OSError) as exc:
            raise Pop3Error(f"TLS handshake failed: {exc}", kind="tls", step="STLS") from None
        self.tls = True

    async def listing(self, *, limit: int = 64 * 1024 * 1024) -> list[Listed]:
        """Every message: number, unique id (UIDL; None when the server has no UIDL) and size (LIST)."""
        sizes: dict[int, int] = {}
        for row in (await self.multiline("LIST", limit=limit)).split(b"\r\n"):
            parts = row.split()
            if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
                sizes[int(parts[0])] = int(parts[1])
        uidls: dict[int, str] = {}
        try:
            for row in (await self.multiline("UIDL", limit=limit)).split(b"\r\n"):
                parts = row.split()
                if len(parts) >= 2 and parts[0].isdigit():
                    uidls[int(parts[0])] = parts[1].decode("ascii", "replace")
        except Pop3Error as exc:
            if exc.kind != "protocol" or "the server said" not in str(exc):
                raise
        return [Listed(n, uidls.get(n), size) for n, size in sorted(sizes.items())]

    async def retrieve(self, number: int, *, limit: int) -> bytes:
        """RETR: the whole message with CRLF line ends."""
        return await self.multiline(f"RETR {number}", limit=limit, step=f"RETR {number}")

    async def top(self, number: int, lines: int = 0, *, limit: int = 1024 * 1024) -> bytes:
        """TOP: the header (and ``lines`` body lines); ``Pop3Error`` when the server has no TOP."""
        return await self.multiline(f"TOP {number} {lines}", limit=limit, step=f"TOP {number}")

    async def delete(self, number: int) -> None:
        """DELE: marked for deletion; the server removes it only after a successful QUIT."""
        await self.command(f"DELE {number}", step=f"DELE {number}")

    async def quit(self) -> None:
        """QUIT: the server carries out the deletions (UPDATE state), then the connection is closed."""
        try:
            await self.command("QUIT")
        finally:
            self.close()

    def close(self) -> None:
        """Drop the connection without QUIT: nothing marked for deletion is deleted."""
        with contextlib.suppress(Exception):
            self.writer.transport.abort()
