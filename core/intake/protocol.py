"""``GatewaySMTP``: aiosmtpd's SMTP protocol with the gateway's changes, every private override in one place.

aiosmtpd has no public hooks for these, so this class overrides private names of
``aiosmtpd.smtp.SMTP``. They are tested against the pinned range of aiosmtpd in
pyproject.toml (``tests/core/test_aiosmtpd_overrides.py`` fails loudly when an upgrade
renames or reshapes one of them). Each override says what it changes and why:

- ``_call_handler_hook`` (private): also updates the live session table before each
  handler hook, so the console shows the SMTP command a client is at;
- ``_getaddr`` (private): a fast path for plain ``<local@domain>`` paths, which skips
  aiosmtpd's full RFC 5322 parser (a measurable share of intake CPU); anything else
  goes through aiosmtpd's own parser;
- ``smtp_DATA`` (public command, but it uses the private ``_reader`` stream and
  ``_set_post_data_state``): reads the message in 64 KB chunks (``data.py``) instead of
  line by line — the dominant intake cost for larger messages;
- ``connection_made``/``connection_lost``/``eof_received`` (public asyncio protocol
  methods): the connection limit answered with 421, and the session table.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from typing import Any

from aiosmtpd.smtp import MISSING, SMTP

from .data import read_data

log = logging.getLogger("mailpipe.intake")

# A plain <dot-atom@domain> path, the case of nearly every MAIL and RCPT: parsed without the email
# package's full RFC 5322 parser. Anything else takes aiosmtpd's path.
_SIMPLE_PATH = re.compile(r"<([A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
                          r"@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*)>")

PRIVATE_NAMES = ("_call_handler_hook", "_getaddr", "_reader", "_set_post_data_state", "_reset_timeout")
"""The private parts of aiosmtpd.smtp.SMTP this module relies on (checked by the tests)."""


class ConnectionSlots:
    """Counts open intake connections against a limit; the sessions table follows them.

    ``opened(protocol, peer)`` is False when the limit is reached (the caller refuses).
    """

    def __init__(self, limit: int, on_open: Callable[[Any, str], None], on_close: Callable[[Any], None],
                 on_command: Callable[[Any, str, str | None], None]) -> None:
        self.limit = limit
        self.active = 0
        self.on_open = on_open
        self.on_close = on_close
        self.on_command = on_command

    def opened(self, protocol: Any, peer: str) -> bool:
        if self.active >= self.limit:
            return False
        self.active += 1
        self.on_open(protocol, peer)
        return True

    def closed(self, protocol: Any) -> None:
        self.active -= 1
        self.on_close(protocol)


class GatewaySMTP(SMTP):
    """aiosmtpd's SMTP protocol with a connection limit answered with 421 and a chunked DATA reader."""

    def __init__(self, handler: Any, *, slots: ConnectionSlots, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._slots = slots
        self._counted = False
        self._refused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self._counted and not self._refused:
            peername = transport.get_extra_info("peername")
            if not self._slots.opened(self, str(peername[0]) if peername else "?"):
                self._refused = True
                log.warning("connection from %s refused: %d connections open", peername, self._slots.active)
                transport.write(f"421 4.7.0 {self.hostname} Too many connections, try again later\r\n".encode())
                transport.close()
                return
            self._counted = True
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._refused:
            return
        if self._counted:
            self._counted = False
            self._slots.closed(self)
        super().connection_lost(error)

    def eof_received(self) -> bool | None:
        if self._refused:
            return False
        return super().eof_received()

    async def _call_handler_hook(self, command: str, *args: Any) -> Any:
        """Override (private): keep the live session table at the SMTP command being handled."""
        helo = str(args[0]) if command in ("HELO", "EHLO") and args else None
        self._slots.on_command(self, command.lower(), helo)
        return await super()._call_handler_hook(command, *args)

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """Override (private): plain ``<local@domain>`` without the full RFC 5322 parser."""
        m = _SIMPLE_PATH.match(arg.lstrip())
        if m is None or len(m.group(1).partition("@")[0]) > self.local_part_limit > 0:
            return super()._getaddr(arg)
        return m.group(1), arg.lstrip()[m.end():].lstrip()

    async def smtp_DATA(self, arg: str) -> None:
        """DATA as aiosmtpd does it, but reading the message in chunks from the private ``_reader``."""
        if await self.check_helo_needed():
            return
        if await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        result = await read_data(self._reader, size_limit=self.data_size_limit, on_progress=self._reset_timeout)
        if result is None:  # the client went away in the middle
            if self.transport is not None:
                self.transport.close()
            return
        if result.content is None:
            self._set_post_data_state()
            await self.push(result.error or "451 4.3.0 Error")
            return
        self.envelope.content = self.envelope.original_content = result.content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push("250 OK" if status is MISSING else status)
