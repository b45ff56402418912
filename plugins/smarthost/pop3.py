"""POP3 login for POP-before-SMTP ("Wait until logged into Internet Mail Account").

``pop3_login`` logs into an Internet Mail Account's POP3 server (USER/PASS or
APOP; plain, STLS or POP3S) and logs out again, in a worker thread (Python's
``poplib`` is blocking). An account with ``oauth2`` logs in with ``AUTH XOAUTH2``
(RFC 5034 SASL, as Gmail and Outlook offer it) and a token instead.
``PopLogins`` remembers when each account last logged in and logs in again when
that is older than the window, one login at a time per account however many
messages wait.
"""

from __future__ import annotations

import asyncio
import base64
import poplib
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

from mailpipe.core.settings import Account

from ..outbound.tls import client_context


class Pop3LoginFailed(Exception):
    """The POP3 login did not succeed; the text says at which step and never shows the password or token.

    ``refused``: the server answered the credentials with an error (not a connection or TLS failure).
    """

    def __init__(self, text: str, *, refused: bool = False) -> None:
        super().__init__(text)
        self.refused = refused


def default_port(tls: str) -> int:
    """995 for POP3S (implicit TLS), 110 otherwise."""
    return 995 if tls == "implicit" else 110


def _describe(account: Account) -> str:
    pop = account.pop3
    assert pop is not None
    return f"POP3 login as {account.username} at {pop.server}:{pop.port or default_port(pop.tls)}"


def _xoauth2(conn: poplib.POP3, user: str, token: str) -> None:
    """``AUTH XOAUTH2``, the token in the continuation (RFC 5034: ``+`` then the base64 initial response)."""
    blob = base64.b64encode(f"user={user}\x01auth=Bearer {token}\x01\x01".encode()).decode()
    conn._shortcmd("AUTH XOAUTH2")  # a "+ " continuation passes poplib's check like +OK
    resp = conn._shortcmd(blob)
    if not resp.startswith(b"+OK"):  # "+ <base64 JSON error>": answer with an empty line, then -ERR follows
        conn._shortcmd("")
        raise poplib.error_proto(resp)


def _login_blocking(
    account: Account, timeout: float, allow_plaintext: bool, base_dir_resolve: Callable[[Path], Path],
    token: str | None = None,
) -> str:
    pop = account.pop3
    assert pop is not None
    port = pop.port or default_port(pop.tls)
    who = _describe(account)
    password = token if token is not None else account.password.get_secret_value() if account.password else ""
    ctx = None
    if pop.tls != "none":
        ca = base_dir_resolve(pop.ca_file) if pop.ca_file else None
        ctx = client_context(verify=pop.verify, ca_file=ca)
    step = "connect"
    conn: poplib.POP3 | None = None
    try:
        if pop.tls == "implicit":
            conn = poplib.POP3_SSL(pop.server, port, timeout=timeout, context=ctx)
        else:
            conn = poplib.POP3(pop.server, port, timeout=timeout)
        if pop.tls == "starttls":
            step = "STLS"
            conn.stls(ctx)
        if token is not None:
            if pop.tls == "none" and not allow_plaintext:
                raise Pop3LoginFailed(f"{who} refused: AUTH XOAUTH2 without TLS would send the token in clear "
                                      "and allow_plaintext_auth is not set")
            step = "AUTH XOAUTH2"
            _xoauth2(conn, account.username, token)
        elif pop.apop:
            step = "APOP"
            conn.apop(account.username, password)
        else:
            if pop.tls == "none" and not allow_plaintext:
                raise Pop3LoginFailed(f"{who} refused: USER/PASS without TLS would send the password in clear "
                                      "and allow_plaintext_auth is not set")
            step = "USER"
            conn.user(account.username)
            step = "PASS"
            conn.pass_(password)
        step = "QUIT"
        conn.quit()
        conn = None
        how = "AUTH XOAUTH2" if token is not None else "APOP" if pop.apop else "USER/PASS"
        return f"{who} succeeded ({how}, tls: {pop.tls})"
    except Pop3LoginFailed:
        raise
    except poplib.error_proto as exc:
        text = _text(exc).replace(password, "***") if password else _text(exc)
        raise Pop3LoginFailed(f"{who} failed at {step}: the server said {text}",
                              refused=step in ("APOP", "PASS", "AUTH XOAUTH2")) from None
    except TimeoutError:
        raise Pop3LoginFailed(f"{who} failed at {step}: no answer within {timeout:.0f}s") from None
    except ssl.SSLError as exc:
        raise Pop3LoginFailed(f"{who} failed at {step}: TLS error: {exc.reason or exc}") from None
    except OSError as exc:
        raise Pop3LoginFailed(f"{who} failed at {step}: {exc.strerror or exc}") from None
    finally:
        if conn is not None:
            try:
                conn.close()
            except OSError:
                pass


def _text(exc: poplib.error_proto) -> str:
    arg = exc.args[0] if exc.args else b""
    text = arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)
    return " ".join(text.split())[:300]


async def pop3_login(account: Account, *, timeout: float, allow_plaintext: bool,
                     resolve: Callable[[Path], Path] = lambda p: p, token: str | None = None) -> str:
    """Log into ``account``'s POP3 server and out again; return a description; raise ``Pop3LoginFailed``.

    With ``token`` (the account has ``oauth2``) the login is ``AUTH XOAUTH2``, else APOP or USER/PASS.
    """
    if account.pop3 is None:
        raise Pop3LoginFailed(f"account {account.address} has no pop3 settings")
    return await asyncio.to_thread(_login_blocking, account, timeout, allow_plaintext, resolve, token)


class PopLogins:
    """When each account last logged in with POP3; logs in again when that is older than ``window``.

    ``now`` is the gateway clock. Concurrent callers for the same account wait
    for one login instead of each making their own.
    """

    def __init__(self, window: float, now: Callable[[], float]) -> None:
        self.window = window
        self.now = now
        self.last: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def fresh(self, account: Account) -> bool:
        """Whether the last successful login of ``account`` is still inside the window."""
        at = self.last.get(account.address.lower())
        return at is not None and self.now() - at < self.window

    async def ensure(self, account: Account, login: Callable[[], Awaitable[str]]) -> bool:
        """Make sure ``account`` logged in within the window; True when a login was made now.

        ``login`` is awaited to log in (it raises on failure, and then no time is recorded).
        """
        key = account.address.lower()
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            if self.fresh(account):
                return False
            started = self.now()
            await login()
            self.last[key] = started
            return True
