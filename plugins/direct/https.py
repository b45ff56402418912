"""Small HTTPS requests of direct delivery: MTA-STS policy fetches and TLS-report uploads.

The server's name is resolved through the same DNS servers as the MX lookups (never the
system resolver), its addresses are raced as for MX hosts, and the connection is made to
``port`` (443; tests name another). The certificate is verified against ``ca_file`` or the
system CAs, for the name asked for. Redirects are not followed (RFC 8461 3.3). The whole
exchange has a time limit and the answer a size limit. The request is HTTP/1.1 with
``Connection: close``; the answer is read to its end and parsed by ``http.client``.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import io
import logging
import ssl
from dataclasses import dataclass

from mailpipe.plugins.outbound.replies import OutboundError, short

from .hosts import connect_first, interleave
from .mx import MxResolver

log = logging.getLogger("mailpipe.plugins.direct.https")
HEADER_ALLOWANCE = 16 * 1024  # bytes of status line and headers on top of the body limit


class HttpsError(Exception):
    """The request failed (DNS, connection, TLS, status, size, time); the text says how.

    ``certificate``: the server's certificate was not valid for its name (RFC 8460's
    ``sts-webpki-invalid`` when fetching a policy).
    """

    def __init__(self, text: str, *, certificate: bool = False) -> None:
        super().__init__(text)
        self.certificate = certificate


@dataclass(frozen=True)
class HttpsAnswer:
    """Status, media type (without parameters, lower case) and body of an answer."""

    status: int
    media_type: str
    body: bytes


@dataclass(frozen=True)
class HttpsClient:
    """Makes requests through ``resolver`` to ``port`` with ``context``, within ``timeout`` and ``limit`` bytes."""

    resolver: MxResolver
    context: ssl.SSLContext
    port: int = 443
    timeout: float = 10.0
    limit: int = 64 * 1024
    user_agent: str = "mailpipe"

    async def request(self, method: str, host: str, path: str, body: bytes = b"",
                      headers: dict[str, str] | None = None, *, port: int | None = None) -> HttpsAnswer:
        """One request to ``https://host:port/path`` (``port``: the client's unless given); raises ``HttpsError``."""
        try:
            async with asyncio.timeout(self.timeout):
                return await self._request(method, host, port or self.port, path, body, headers or {})
        except TimeoutError:
            raise HttpsError(f"https://{host}{path}: no answer within {self.timeout:g}s") from None

    async def _request(self, method: str, host: str, port: int, path: str, body: bytes,
                       headers: dict[str, str]) -> HttpsAnswer:
        url = f"https://{host}{'' if port == 443 else f':{port}'}{path}"
        try:
            addresses, errors = await self.resolver.addresses(host)
        except Exception as exc:  # noqa: BLE001 - any DNS failure
            raise HttpsError(f"{url}: cannot resolve {host}: {short(exc)}") from exc
        if not addresses:
            raise HttpsError(f"{url}: {host} has no address" + (f" ({short(errors[0])})" if errors else ""))
        for tries_left in (1, 0):  # a connection refused or cut during the handshake is tried once more
            try:
                sock, _ = await connect_first(host, interleave(addresses), port, timeout=self.timeout)
            except OutboundError as exc:
                if tries_left:  # (the request's own time-out bounds both tries)
                    log.info("%s: %s: trying once more", url, exc.reply.text)
                    continue
                raise HttpsError(f"{url}: {exc.reply.text}") from exc
            try:
                reader, writer = await asyncio.open_connection(sock=sock, ssl=self.context, server_hostname=host)
                break
            except (ssl.SSLError, OSError) as exc:  # asyncio's transport closes the socket
                certificate = isinstance(exc, ssl.SSLCertVerificationError)
                if tries_left and not certificate and isinstance(exc, (ConnectionError, ssl.SSLEOFError)):
                    log.info("%s: connection cut during the TLS handshake (%s): trying once more", url, short(exc))
                    continue
                raise HttpsError(f"{url}: TLS failed: {short(exc)}", certificate=certificate) from exc
        try:
            lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", f"User-Agent: {self.user_agent}",
                     "Connection: close", "Accept: */*", *(f"{k}: {v}" for k, v in headers.items())]
            if body or method == "POST":
                lines.append(f"Content-Length: {len(body)}")
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
            await writer.drain()
            raw = await self._read_all(reader, url)
        except (ssl.SSLError, OSError) as exc:
            raise HttpsError(f"{url}: {short(exc)}") from exc
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
        return self._parse(raw, method, url)

    async def _read_all(self, reader: asyncio.StreamReader, url: str) -> bytes:
        cap = self.limit + HEADER_ALLOWANCE
        data = bytearray()
        while True:
            try:
                chunk = await reader.read(65536)
            except (ssl.SSLError, ConnectionResetError):  # a server that ends without close_notify
                break
            if not chunk:
                break
            data += chunk
            if len(data) > cap:
                raise HttpsError(f"{url}: answer larger than {self.limit} bytes")
        return bytes(data)

    def _parse(self, raw: bytes, method: str, url: str) -> HttpsAnswer:
        response = http.client.HTTPResponse(_Recorded(raw), method=method)  # type: ignore[arg-type]
        try:
            response.begin()
            body = response.read()
        except (http.client.HTTPException, ValueError) as exc:
            raise HttpsError(f"{url}: not a valid HTTP answer: {short(exc)}") from exc
        if len(body) > self.limit:
            raise HttpsError(f"{url}: answer larger than {self.limit} bytes")
        media = (response.getheader("Content-Type") or "").split(";")[0].strip().lower()
        return HttpsAnswer(response.status, media, body)


class _Recorded:
    """What ``http.client.HTTPResponse`` reads from: the bytes already received."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def makefile(self, mode: str, *args: object, **kwargs: object) -> io.BytesIO:
        return io.BytesIO(self._data)
