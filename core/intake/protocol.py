"""``GatewaySMTP``: aiosmtpd's SMTP protocol with the gateway's changes, every private override in one place.

aiosmtpd has no public hooks for some of these, so this class overrides private names of
``aiosmtpd.smtp.SMTP``. They are tested against the pinned range of aiosmtpd in
pyproject.toml (``tests/core/test_aiosmtpd_overrides.py`` fails loudly when an upgrade
renames or reshapes one of them). Each override says what it changes and why:

- ``__init__`` (the constructor, which sets private attributes): aiosmtpd scans the protocol
  and the handler with ``inspect.getmembers``/``dir`` for ``auth_*``, ``handle_*`` and
  ``smtp_*`` methods on every connection (13.7% of the intake's samples with a connection per
  message); this one does the same work once per protocol class, handler class and excluded
  mechanisms (``_Tables``) and only binds the methods per connection. Everything else is
  aiosmtpd 1.4's constructor, attribute for attribute (a test compares the two);

- ``_call_handler_hook`` (private): also updates the live session table before each
  handler hook, so the console shows the SMTP command a client is at;
- ``_getaddr`` (private): a fast path for plain ``<local@domain>`` paths, which skips
  aiosmtpd's full RFC 5322 parser (a measurable share of intake CPU); anything else
  goes through aiosmtpd's own parser;
- ``smtp_DATA`` (public command, but it uses the private ``_reader`` stream and
  ``_set_post_data_state``): reads the message in 64 KB chunks (``data.py``) instead of
  line by line — the dominant intake cost for larger messages — within
  ``intake.data_timeout`` for the whole message (then ``421`` and close: a client
  trickling a byte a second no longer holds its slot for ever);
- ``connection_made``/``connection_lost``/``eof_received`` (public asyncio protocol
  methods): the connection limits (all clients, and per client address) answered with
  421, the session table, and a client that closed or half-closed its side gives its
  slot back at once (aiosmtpd would keep the half-open session until ``timeout``);
- ``_reset_timeout`` (private): the idle timer moves a deadline instead of cancelling and
  scheduling a timer for every command and every chunk of a message; the module's
  ``sanitized_log`` (the command loop's logging) returns at once unless ``mail.log`` writes INFO;
- ``push`` (public): the lines of a multi-line reply (``250-...``) are held back and
  written together with the reply's last line, in one send: scanners that read a reply
  per segment (nmap's smtp-open-relay, smtpsmug) no longer read one reply behind;
- ``smtp_STARTTLS`` (public command): a second STARTTLS inside TLS is answered ``503``
  (RFC 3207) instead of stacking TLS on TLS;
- ``handle_exception`` (public): a failed TLS handshake is one warning line (client
  address and reason) instead of aiosmtpd's ERROR traceback;
- ``auth_PLAIN``/``auth_LOGIN`` (public mechanism methods, replaced): the password is
  checked by ``RelayLogin`` (auth.py) off the event loop and guessing is slowed and cut.
"""

from __future__ import annotations

import asyncio
import binascii
import inspect
import logging
import re
import ssl
import warnings
from base64 import b64decode
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import aiosmtpd.smtp as _aiosmtpd
from aiosmtpd.smtp import MISSING, SMTP, AuthResult, TLSSetupException, syntax

from .auth import RelayLogin
from .data import read_data
from .handoff import AFTER_NEXT_REPLY, QuietStarts, Start, run_starts

log = logging.getLogger("mailpipe.intake")

# A plain <dot-atom@domain> path, the case of nearly every MAIL and RCPT: parsed without the email
# package's full RFC 5322 parser. Anything else takes aiosmtpd's path.
_SIMPLE_PATH = re.compile(r"<([A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
                          r"@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*)>")

PRIVATE_NAMES = ("_call_handler_hook", "_getaddr", "_reader", "_set_post_data_state", "_reset_timeout",
                 "_cb_client_connected")
"""The private parts of aiosmtpd.smtp.SMTP this module relies on (checked by the tests)."""

MODULE_NAMES = ("_AuthMechAttr", "__ident__", "make_loop", "login_always_fail", "CALL_LIMIT_DEFAULT", "is_int",
                "DATA_SIZE_DEFAULT", "sanitized_log")
"""The (partly private) names of the aiosmtpd.smtp module the constructor uses (checked by the tests)."""

_aiosmtpd_sanitized_log = _aiosmtpd.sanitized_log


def _sanitized_log(func: Callable[..., None], msg: Any, *args: Any, **kwargs: Any) -> None:
    """aiosmtpd's ``sanitized_log`` (it logs every command line, AUTH data masked), skipped unless its logger
    writes INFO: aiosmtpd masks the arguments before asking the logger, twice per command (``logs.py`` sets
    ``mail.log`` to WARNING)."""
    if _aiosmtpd.log.isEnabledFor(logging.INFO):
        _aiosmtpd_sanitized_log(func, msg, *args, **kwargs)


_aiosmtpd.sanitized_log = _sanitized_log  # the module global aiosmtpd's command loop calls


@dataclass(frozen=True)
class _Tables:
    """What aiosmtpd's constructor finds by reflection, found once: attribute names, bound per connection.

    ``auth``: (mechanism, attribute, on the protocol itself) in aiosmtpd's order (a later entry of the
    same mechanism wins, as in its dict); ``handle``: (hook, attribute) of the handler; ``smtp``:
    (command, attribute) of the protocol; ``ehlo``: ``"old"``, ``"new"`` or None (handle_EHLO's form).
    """

    auth: tuple[tuple[str, str, bool], ...]
    handle: tuple[tuple[str, str], ...]
    smtp: tuple[tuple[str, str], ...]
    ehlo: str | None


_TABLES: dict[tuple[type, type], _Tables] = {}


def _tables(protocol: SMTP, handler: Any) -> _Tables:
    """The reflection tables of this protocol class and handler class (made by aiosmtpd's own expressions)."""
    key = (type(protocol), type(handler))
    found = _TABLES.get(key)
    if found is not None:
        return found
    auth = tuple(
        (getattr(mfunc, "__auth_mechanism_name__", mname.replace("auth_", "").replace("__", "-")), mname,
         obj is protocol)
        for obj in (protocol, handler)
        for mname, mfunc in inspect.getmembers(obj)
        if mname.startswith("auth_")
    )
    handle = tuple((m.replace("handle_", ""), m) for m in dir(handler) if m.startswith("handle_"))
    ehlo: str | None = None
    if hasattr(handler, "handle_EHLO"):
        params = len(inspect.signature(handler.handle_EHLO).parameters)
        if params not in (4, 5):
            raise RuntimeError("Unsupported EHLO Hook")
        ehlo = "old" if params == 4 else "new"
    smtp = tuple((m.replace("smtp_", ""), m) for m in dir(protocol) if m.startswith("smtp_"))
    found = _TABLES[key] = _Tables(auth, handle, smtp, ehlo)
    return found


class ConnectionSlots:
    """Counts open intake connections against a limit, in total and per client address; the sessions table follows.

    ``opened(protocol, peer)`` is None when the connection is counted, else the reason it is
    refused (the caller answers 421). ``per_client`` is never more than ``limit``. With
    ``other_workers`` (one of several ``pipeline serve`` workers) it keeps ``quiet``, the attempts
    waiting for this worker to have no client (``handoff.QuietStarts``), and tells it of each change.
    """

    def __init__(self, limit: int, on_open: Callable[[Any, str], None], on_close: Callable[[Any], None],
                 on_command: Callable[[Any, str, str | None], None], per_client: int | None = None,
                 other_workers: bool = False) -> None:
        self.limit = limit
        self.per_client = min(per_client or limit, limit)
        self.active = 0
        self.peak = 0  # the most counted at once since ``busiest`` was last asked
        self.by_client: dict[str, int] = {}
        self.on_open = on_open
        self.on_close = on_close
        self.on_command = on_command
        # Attempts waiting for this worker's intake to be quiet: only where another worker can take the
        # client's next connection (one process serves every connection: waiting would gain nothing).
        self.quiet = QuietStarts(lambda: self.active) if other_workers else None

    def opened(self, protocol: Any, peer: str) -> str | None:
        """Count a new connection from ``peer``; None when counted, else why it is refused."""
        if self.active >= self.limit:
            return "Too many connections"
        if self.by_client.get(peer, 0) >= self.per_client:
            return f"Too many connections from {peer}"
        self.active += 1
        if self.active > self.peak:
            self.peak = self.active
        self.by_client[peer] = self.by_client.get(peer, 0) + 1
        self.on_open(protocol, peer)
        if self.quiet is not None:
            self.quiet.opened()
        return None

    def busiest(self) -> int:
        """The most connections open at once since the last call (the intake-first look, every 25 ms)."""
        peak, self.peak = self.peak, self.active
        return peak

    def closed(self, protocol: Any, peer: str) -> None:
        """A counted connection from ``peer`` ended: its slot is free again."""
        self.active -= 1
        left = self.by_client.get(peer, 1) - 1
        if left > 0:
            self.by_client[peer] = left
        else:
            self.by_client.pop(peer, None)
        self.on_close(protocol)
        if self.quiet is not None:
            self.quiet.closed()


def _handshake_failure(error: BaseException) -> str:
    """Why a TLS handshake failed, in one short line (the innermost cause of ``error``)."""
    cause: BaseException = error
    for _ in range(10):  # bounded: a chain is short, but never trust it to end
        inner = cause.__cause__ or cause.__context__
        if inner is None:
            break
        cause = inner
    text = " ".join(str(cause).split())[:200]
    return f"{type(cause).__name__}: {text}" if text else type(cause).__name__


class GatewaySMTP(SMTP):
    """aiosmtpd's SMTP protocol with the gateway's limits, chunked DATA reader, one-send replies and relay logins.

    ``data_timeout`` bounds the whole DATA phase of one message; ``relay_login`` checks
    AUTH PLAIN/LOGIN (None: no relay users, the mechanisms are not offered).
    """

    def __init__(self, handler: Any, *, slots: ConnectionSlots, data_timeout: float | None = None,
                 relay_login: RelayLogin | None = None, **kwargs: Any) -> None:
        self._smtp_init(handler, **kwargs)
        self._slots = slots
        self._data_timeout = data_timeout
        self._relay_login = relay_login
        self._client = "?"
        self._counted = False
        self._refused = False
        self._reply_lines: list[bytes] = []
        self._idle_deadline = 0.0
        self._messages = 0  # messages this session has handed over (DATA answered by the handler)
        self._after_reply: list[Start] = []  # attempts to start after the next reply (handoff.py)

    def _smtp_init(
        self, handler: Any, *, data_size_limit: int | None = _aiosmtpd.DATA_SIZE_DEFAULT, enable_SMTPUTF8: bool = False,
        decode_data: bool = False, hostname: str | None = None, ident: str | None = None,
        tls_context: ssl.SSLContext | None = None, require_starttls: bool = False, timeout: float = 300,
        auth_required: bool = False, auth_require_tls: bool = True, auth_exclude_mechanism: Iterable[str] | None = None,
        auth_callback: Any = None, command_call_limit: int | dict[str, int] | None = None, authenticator: Any = None,
        proxy_protocol_timeout: float | None = None, loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        """Override (the constructor): aiosmtpd 1.4's ``SMTP.__init__``, its reflection done once per class."""
        self.__ident__ = ident or _aiosmtpd.__ident__
        self.loop = loop if loop else _aiosmtpd.make_loop()
        asyncio.StreamReaderProtocol.__init__(
            self, asyncio.StreamReader(loop=self.loop, limit=self.line_length_limit),
            client_connected_cb=self._cb_client_connected, loop=self.loop)
        self.event_handler = handler
        assert data_size_limit is None or isinstance(data_size_limit, int)
        self.data_size_limit = data_size_limit
        self.enable_SMTPUTF8 = enable_SMTPUTF8
        self._decode_data = decode_data
        self.command_size_limits.clear()
        if hostname:
            self.hostname = hostname
        else:
            import socket

            self.hostname = socket.getfqdn()
        self.tls_context = tls_context
        if tls_context:
            if tls_context.verify_mode not in {ssl.CERT_NONE, ssl.CERT_OPTIONAL}:
                _aiosmtpd.log.warning("tls_context.verify_mode not in {CERT_NONE, CERT_OPTIONAL}; "
                                      "this might cause client connection problems")
            elif tls_context.check_hostname:
                _aiosmtpd.log.warning("tls_context.check_hostname == True; this might cause client connection problems")
        self.require_starttls = tls_context and require_starttls
        self._timeout_duration = timeout
        self._timeout_handle = None
        self._tls_handshake_okay = True
        self._tls_protocol = None
        self._original_transport = None
        self.session = None
        self.envelope = None
        self.transport = None
        self._handler_coroutine = None
        if not auth_require_tls and auth_required:
            warnings.warn("Requiring AUTH while not requiring TLS can lead to security vulnerabilities!", stacklevel=3)
            _aiosmtpd.log.warning("auth_required == True but auth_require_tls == False")
        self._auth_require_tls = auth_require_tls
        if proxy_protocol_timeout is not None:
            if proxy_protocol_timeout <= 0:
                raise ValueError("proxy_protocol_timeout must be > 0")
            elif proxy_protocol_timeout < 3.0:
                _aiosmtpd.log.warning("proxy_protocol_timeout < 3.0")
        self._proxy_timeout = proxy_protocol_timeout
        if authenticator is not None:
            self._authenticator = authenticator
            self._auth_callback = None
        else:
            self._auth_callback = auth_callback or _aiosmtpd.login_always_fail
            self._authenticator = None
        self._auth_required = auth_required

        tables = _tables(self, handler)
        self._auth_methods = {
            name: _aiosmtpd._AuthMechAttr(getattr(self if builtin else handler, attribute), builtin)
            for name, attribute, builtin in tables.auth
        }
        for m in auth_exclude_mechanism or []:
            self._auth_methods.pop(m, None)
        if _aiosmtpd.log.isEnabledFor(logging.INFO):
            _aiosmtpd.log.info("Available AUTH mechanisms: " + " ".join(
                m + "(builtin)" if impl.is_builtin else m for m, impl in sorted(self._auth_methods.items())))
        self._handle_hooks = {name: getattr(handler, attribute) for name, attribute in tables.handle}
        self._ehlo_hook_ver = tables.ehlo
        self._smtp_methods = {name: getattr(self, attribute) for name, attribute in tables.smtp}

        if command_call_limit is None:
            self._enforce_call_limit = False
        else:
            self._enforce_call_limit = True
            if isinstance(command_call_limit, int):
                self._call_limit_base = {}
                self._call_limit_default = command_call_limit
            elif isinstance(command_call_limit, dict):
                if not all(map(_aiosmtpd.is_int, command_call_limit.values())):
                    raise TypeError("All command_call_limit values must be int")
                self._call_limit_base = command_call_limit
                self._call_limit_default = command_call_limit.get("*", _aiosmtpd.CALL_LIMIT_DEFAULT)
            else:
                raise TypeError("command_call_limit must be int or Dict[str, int]")

    # -- connection ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self._counted and not self._refused:
            peername = transport.get_extra_info("peername")
            self._client = str(peername[0]) if peername else "?"
            refusal = self._slots.opened(self, self._client)
            if refusal is not None:
                self._refused = True
                log.warning("connection from %s refused: %s (%d open)", self._client, refusal.lower(),
                            self._slots.active)
                transport.write(f"421 4.7.0 {self.hostname} {refusal}, try again later\r\n".encode())
                transport.close()
                return
            self._counted = True
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._refused:
            return
        if self._counted:
            self._counted = False
            self._slots.closed(self, self._client)
        self._start_after_reply(ending=True)
        super().connection_lost(error)

    def eof_received(self) -> bool | None:
        """The client closed (or half-closed) its side: end the session now and give its slot back."""
        if self._refused:
            return False
        super().eof_received()  # aiosmtpd cancels the session's command loop here
        if self.transport is not None:
            self.transport.close()
        return False

    # -- replies ------------------------------------------------------------------------

    async def push(self, status: str | bytes) -> None:
        """Send one reply line; the lines of a multi-line reply go out with its last line, in one send."""
        line = status.encode("utf-8" if self.enable_SMTPUTF8 else "ascii") if isinstance(status, str) else status
        if line[3:4] == b"-":
            self._reply_lines.append(line + b"\r\n")
            return
        if self._reply_lines:
            line = b"".join(self._reply_lines) + line
            self._reply_lines.clear()
        self._writer.write(line + b"\r\n")  # aiosmtpd's push, without its per-reply debug formatting
        if self._after_reply:
            self._start_after_reply(ending=line.startswith(b"221"))  # 221: the session ends (QUIT)
        if _aiosmtpd.log.isEnabledFor(logging.DEBUG):
            _aiosmtpd.log.debug("%r << %r", self._client, line)
        await self._writer.drain()

    def _start_after_reply(self, *, ending: bool = False) -> None:
        """The reply the handed-off attempts waited for is written (or the session ended): start them — or,
        when it ends the session and the session was the worker's only one, when the worker is quiet
        (``handoff.QuietStarts``; this session is still counted when its ``221`` is written)."""
        starts, self._after_reply = self._after_reply, []
        quiet = self._slots.quiet
        if ending and starts and quiet is not None and self._slots.active <= (1 if self._counted else 0):
            quiet.add(starts)
            return
        run_starts(starts)

    # -- the idle timer -----------------------------------------------------------------

    def _reset_timeout(self, duration: float | None = None) -> None:
        """Override (private): move the idle deadline; the one timer is re-armed only when it fires early.

        aiosmtpd cancels its timer and schedules a new one for every command and, through
        ``read_data``, every chunk of a message; moving a deadline costs one clock read.
        """
        deadline = self.loop.time() + (duration or self._timeout_duration)
        self._idle_deadline = deadline
        handle = self._timeout_handle
        if handle is None or handle.cancelled() or deadline < handle.when():
            if handle is not None:
                handle.cancel()
            self._timeout_handle = self.loop.call_at(deadline, self._idle_check)

    def _idle_check(self) -> None:
        """The idle timer fired: close the connection if the deadline has passed, else wait for the new one."""
        if self.loop.time() < self._idle_deadline:
            self._timeout_handle = self.loop.call_at(self._idle_deadline, self._idle_check)
            return
        self._timeout_cb()

    async def handle_exception(self, error: Exception) -> str:
        """A failed TLS handshake: one warning line (client address, reason); anything else as aiosmtpd does."""
        if isinstance(error, TLSSetupException):
            log.warning("TLS handshake with %s failed: %s", self._client, _handshake_failure(error))
            return "454 4.7.0 TLS handshake failed"  # not sent: aiosmtpd closes the connection
        return await super().handle_exception(error)

    def _encrypted(self) -> bool:
        if self.session is not None and self.session.ssl is not None:
            return True
        return self.transport is not None and self.transport.get_extra_info("ssl_object") is not None

    def _cut(self, reply: str) -> None:
        """Answer ``reply`` and close the connection (a limit was reached)."""
        if self.transport is not None:
            self.transport.write(f"{reply}\r\n".encode())
            self.transport.close()

    # -- commands -----------------------------------------------------------------------

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

    @syntax("STARTTLS", when="tls_context")
    async def smtp_STARTTLS(self, arg: str) -> None:
        """STARTTLS as aiosmtpd does it, but a second one inside TLS gets 503 (RFC 3207 section 4.2)."""
        if self._encrypted():
            await self.push("503 5.5.1 Error: TLS already active")
            return
        await super().smtp_STARTTLS(arg)

    @syntax("DATA")
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
        try:
            async with asyncio.timeout(self._data_timeout):
                result = await read_data(self._reader, size_limit=self.data_size_limit,
                                         on_progress=self._reset_timeout)
        except TimeoutError:
            log.warning("DATA from %s not finished within %.0fs: connection closed", self._client, self._data_timeout)
            self._cut(f"421 4.4.2 {self.hostname} Error: timeout exceeded, closing connection")
            return
        if result is None:  # the client went away in the middle
            if self.transport is not None:
                self.transport.close()
            return
        if result.content is None:
            self._set_post_data_state()
            await self.push(result.error or "451 4.3.0 Error")
            return
        self.envelope.content = self.envelope.original_content = result.content
        waiting: list[Start] = []
        token = AFTER_NEXT_REPLY.set(waiting.append) if self._messages == 0 else None
        try:
            status = await self._call_handler_hook("DATA")
        finally:
            if token is not None:
                AFTER_NEXT_REPLY.reset(token)
        self._messages += 1
        self._set_post_data_state()
        await self.push("250 OK" if status is MISSING else status)
        self._after_reply.extend(waiting)  # after this reply: the next one

    # -- relay logins (AUTH) ------------------------------------------------------------

    async def auth_PLAIN(self, _: object, args: list[str]) -> AuthResult:
        """AUTH PLAIN (RFC 4616), initial response or challenge; the check is ``RelayLogin``'s."""
        blob = await self._first_response(args, "")
        if blob is None:
            return AuthResult(success=False, handled=True)
        try:
            _authz, login, password = blob.split(b"\x00")
        except ValueError:
            await self.push("501 5.5.2 Can't split auth value")
            return AuthResult(success=False, handled=True)
        return await self._check_login("PLAIN", login, password)

    async def auth_LOGIN(self, _: object, args: list[str]) -> AuthResult:
        """AUTH LOGIN, user name with the command or after a challenge; the check is ``RelayLogin``'s."""
        login = await self._first_response(args, self.AuthLoginUsernameChallenge)
        if login is None:
            return AuthResult(success=False, handled=True)
        password = await self.challenge_auth(self.AuthLoginPasswordChallenge)
        if password is MISSING:
            return AuthResult(success=False, handled=True)
        return await self._check_login("LOGIN", login, password)

    async def _first_response(self, args: list[str], challenge: str) -> bytes | None:
        """The start of every AUTH exchange: the client's first response, decoded.

        It is the initial response given with the AUTH command (``args[1]``, base64), else the answer
        to ``challenge``. None when no login may go on: the client is cut for failed logins (421), or
        it aborted or sent no valid base64 (501 answered).
        """
        if self._auth_refused():
            return None
        if len(args) == 1:
            blob = await self.challenge_auth(challenge)
            return None if blob is MISSING else blob  # aborted or not base64: challenge_auth has answered 501
        try:
            return b64decode(args[1].encode(), validate=True)
        except (binascii.Error, ValueError):
            await self.push("501 5.5.2 Can't decode base64")
            return None

    def _auth_refused(self) -> bool:
        """A client address cut for failed logins gets 421 and is disconnected before it may try again."""
        if self._relay_login is None or not self._relay_login.cut(self._client):
            return False
        self._cut(f"421 4.7.0 {self.hostname} Error: too many failed logins from {self._client}, try again later")
        return True

    async def _check_login(self, mechanism: str, login: bytes, password: bytes) -> AuthResult:
        """235 for the right password; else 535 after the slow-down, or 421 and close once the address is cut."""
        username = login.decode("utf-8", "replace")
        relay_login = self._relay_login
        if relay_login is None:
            return AuthResult(success=False, handled=False)
        if await relay_login.verify(username, password):
            return AuthResult(success=True, auth_data=username)
        if await relay_login.failed(self._client, username, mechanism):
            self._cut(f"421 4.7.0 {self.hostname} Error: too many failed logins, closing connection")
            return AuthResult(success=False, handled=True)
        return AuthResult(success=False, handled=False)

