"""Logging into an Internet Mail Account's POP3 server: USER/PASS, APOP or SASL XOAUTH2.

``open_mailbox`` connects (POP3S, STLS or plain, the certificate checked unless
``verify: false``) and logs in; collection and POP-before-SMTP both use it. XOAUTH2 tokens
come from a ``TokenProvider``: the default runs ``pop3.token_command`` (or uses the
password as the token); an OAuth2 provider (refreshing tokens itself) plugs in here by
implementing the same one method.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from ..settings import Account, Pop3Settings
from ..tlsfiles import client_tls_context
from ..tokencommand import TokenCommandError, run_token_command
from .client import Pop3Client, Pop3Error, Pop3LoginFailed

_TIMESTAMP = re.compile(r"<[^<>\s]+>")


def default_port(tls: str) -> int:
    """995 for POP3S (implicit TLS), 110 otherwise."""
    return 995 if tls == "implicit" else 110


def endpoint(pop: Pop3Settings) -> str:
    """``server:port`` of an account's POP3 server."""
    return f"{pop.server}:{pop.port or default_port(pop.tls)}"


def describe(account: Account) -> str:
    """``POP3 login as USER at SERVER:PORT``: how errors and logs name a login (no secrets)."""
    assert account.pop3 is not None
    return f"POP3 login as {account.username} at {endpoint(account.pop3)}"


def uses_xoauth2(account: Account) -> bool:
    """Whether ``account`` logs into POP3 with XOAUTH2 (``pop3.xoauth2``, or OAuth2 tokens of its own)."""
    return bool(account.pop3 is not None and account.pop3.xoauth2) or account.oauth2 is not None


def mechanism(account: Account) -> str:
    """The login mechanism an account uses: ``XOAUTH2``, ``APOP`` or ``USER/PASS``."""
    assert account.pop3 is not None
    return "XOAUTH2" if uses_xoauth2(account) else "APOP" if account.pop3.apop else "USER/PASS"


class TokenProvider(Protocol):
    """Where XOAUTH2 access tokens come from (the seam for OAuth2 token flows)."""

    async def token(self, account: Account, timeout: float) -> str:
        """A valid access token for ``account``; ``Pop3Error`` (kind ``login``) when none can be had."""
        ...


class CommandTokens:
    """The default provider: the first line printed by ``pop3.token_command`` (argv list, or a string run by
    ``/bin/sh -c``); without a command, the account's password is the token."""

    async def token(self, account: Account, timeout: float) -> str:
        """Run the command (bounded by ``timeout``) and return its token; shows neither its output nor its stderr."""
        pop = account.pop3
        assert pop is not None
        command = pop.token_command
        if command is None:
            if account.password is None:
                raise Pop3Error("no token: the account has neither pop3.token_command nor a password", kind="login")
            return account.password.get_secret_value()
        try:
            return await run_token_command(command, timeout)
        except TokenCommandError as exc:
            raise Pop3Error(str(exc), kind="login") from None


def _scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if len(secret) >= 3:
            text = text.replace(secret, "***").replace(base64.b64encode(secret.encode()).decode(), "***")
    return text


async def _login(client: Pop3Client, account: Account, pop: Pop3Settings, allow_plaintext: bool,
                 tokens: TokenProvider, secrets: list[str]) -> None:
    user = account.username
    xoauth2 = uses_xoauth2(account)
    if not client.tls and not pop.apop and not allow_plaintext:
        what = "AUTH XOAUTH2 would send the token" if xoauth2 else "USER/PASS would send the password"
        raise Pop3Error(f"refused: {what} in clear without TLS and allow_plaintext_auth is not set", kind="login",
                        step="AUTH XOAUTH2" if xoauth2 else "USER")
    if xoauth2:
        token = await tokens.token(account, client.timeout)
        secrets.append(token)
        raw = f"user={user}\x01auth=Bearer {token}\x01\x01".encode()
        line = await client.exchange(f"AUTH XOAUTH2 {base64.b64encode(raw).decode()}", "AUTH XOAUTH2")
        if line.startswith(b"+ ") or line == b"+":  # the error details (RFC 7628): answer empty, then -ERR
            line = await client.exchange("", "AUTH XOAUTH2")
        if not line.startswith(b"+OK"):
            text = " ".join(line.decode("utf-8", "replace").split())[:300]
            raise Pop3LoginFailed(f"the server said {text}", step="AUTH XOAUTH2")
        return
    assert account.password is not None  # an account without oauth2 has a password (settings.Account)
    password = account.password.get_secret_value()
    if pop.apop:
        stamp = _TIMESTAMP.search(client.greeting)
        if stamp is None:
            raise Pop3Error("the server offers no APOP (no timestamp in its greeting)", kind="login", step="APOP")
        digest = hashlib.md5((stamp.group(0) + password).encode("utf-8")).hexdigest()  # noqa: S324 - APOP is MD5
        await _refusable(client, f"APOP {user} {digest}", "APOP")
        return
    await _refusable(client, f"USER {user}", "USER")
    await _refusable(client, f"PASS {password}", "PASS")


async def _refusable(client: Pop3Client, line: str, step: str) -> None:
    """A login command: its ``-ERR`` is a refused login (``Pop3LoginFailed``)."""
    try:
        await client.command(line, step)
    except Pop3Error as exc:
        if exc.kind == "protocol" and str(exc).startswith("the server said"):
            raise Pop3LoginFailed(str(exc), step=step) from None
        raise


async def open_mailbox(account: Account, *, timeout: float, resolve: Callable[[Path], Path] = lambda p: p,
                       allow_plaintext: bool | None = None, tokens: TokenProvider | None = None) -> Pop3Client:
    """Connect to ``account``'s POP3 server and log in; the logged-in client (the caller quits or closes it).

    ``allow_plaintext`` (default: ``pop3.allow_plaintext_auth``) allows USER/PASS without TLS.
    Raises ``Pop3Error`` (``Pop3LoginFailed`` when the server refused the login) with a text
    ``POP3 login as USER at HOST:PORT failed at STEP: ...`` that shows no secret.
    """
    pop = account.pop3
    if pop is None:
        raise Pop3Error(f"account {account.address} has no pop3 settings", kind="connect")
    who = describe(account)
    secrets = [account.password.get_secret_value()] if account.password is not None else []
    context = None
    if pop.tls != "none":
        context = client_tls_context(verify=pop.verify, ca_file=resolve(pop.ca_file) if pop.ca_file else None)
    client: Pop3Client | None = None
    try:
        client = await Pop3Client.connect(pop.server, pop.port or default_port(pop.tls), tls=pop.tls,
                                          context=context, timeout=timeout)
        await _login(client, account, pop, pop.allow_plaintext_auth if allow_plaintext is None else allow_plaintext,
                     tokens or CommandTokens(), secrets)
    except Pop3Error as exc:
        if client is not None:
            client.close()
        text = _scrub(str(exc), secrets)
        where = f" at {exc.step}" if exc.step else ""
        cls = Pop3LoginFailed if isinstance(exc, Pop3LoginFailed) else Pop3Error
        error = cls(f"{who} failed{where}: {text}", step=exc.step)
        error.kind = exc.kind
        raise error from None
    except BaseException:
        if client is not None:
            client.close()
        raise
    return client


async def pop3_login(account: Account, *, timeout: float, allow_plaintext: bool,
                     resolve: Callable[[Path], Path] = lambda p: p, tokens: TokenProvider | None = None) -> str:
    """Log into ``account``'s POP3 server and out again (POP-before-SMTP); a description of the login.

    Raises ``Pop3Error`` (see ``open_mailbox``) when it does not succeed.
    """
    client = await open_mailbox(account, timeout=timeout, resolve=resolve, allow_plaintext=allow_plaintext,
                                tokens=tokens)
    try:
        await client.quit()
    except Pop3Error as exc:
        raise Pop3Error(f"{describe(account)} failed at QUIT: {exc}", kind=exc.kind, step="QUIT") from None
    pop = account.pop3
    assert pop is not None
    return f"{describe(account)} succeeded ({mechanism(account)}, tls: {pop.tls})"
