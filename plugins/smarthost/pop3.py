"""POP3 login for POP-before-SMTP ("Wait until logged into Internet Mail Account").

``pop3_login`` logs into an Internet Mail Account's POP3 server (USER/PASS, APOP or
XOAUTH2; plain, STLS or POP3S) and logs out again, with the core's POP3 client
(``mailpipe.core.pop3``, which collection uses too). An account with ``oauth2`` logs in
with ``AUTH XOAUTH2`` and a token the smarthost's OAuth2 provider fetched. ``PopLogins`` remembers when each
account last logged in and logs in again when that is older than the window, one login
at a time per account however many messages wait.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from mailpipe.core.pop3 import Pop3Error, default_port
from mailpipe.core.pop3 import pop3_login as login_and_quit
from mailpipe.core.pop3.client import Pop3LoginFailed as Pop3Refused
from mailpipe.core.settings import Account

__all__ = ["Pop3LoginFailed", "PopLogins", "default_port", "pop3_login"]


class Pop3LoginFailed(Exception):
    """The POP3 login did not succeed; the text says at which step and never shows the password or token.

    ``refused``: the server answered the credentials with an error (not a connection or TLS failure).
    """

    def __init__(self, text: str, *, refused: bool = False) -> None:
        super().__init__(text)
        self.refused = refused


class _FixedToken:
    """A token fetched beforehand (by the smarthost's OAuth2 provider), as the POP3 client's ``TokenProvider``."""

    def __init__(self, token: str) -> None:
        self._token = token

    async def token(self, account: Account, timeout: float) -> str:
        return self._token


async def pop3_login(account: Account, *, timeout: float, allow_plaintext: bool,
                     resolve: Callable[[Path], Path] = lambda p: p, token: str | None = None) -> str:
    """Log into ``account``'s POP3 server and out again; return a description; raise ``Pop3LoginFailed``.

    With ``token`` (the account has ``oauth2``) the login is ``AUTH XOAUTH2`` with it.
    """
    if account.pop3 is None:
        raise Pop3LoginFailed(f"account {account.address} has no pop3 settings")
    try:
        return await login_and_quit(account, timeout=timeout, allow_plaintext=allow_plaintext, resolve=resolve,
                                    tokens=_FixedToken(token) if token is not None else None)
    except Pop3Error as exc:
        raise Pop3LoginFailed(str(exc), refused=isinstance(exc, Pop3Refused)) from None


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
