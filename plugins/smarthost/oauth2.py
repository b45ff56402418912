"""The smarthost's OAuth2 logins: one token provider per login that has ``oauth2`` settings.

A login is named by its credentials label: ``login:USER`` (``auth.mode: login`` with
``auth.oauth2``), ``sender-account:USER`` (an account with ``oauth2`` in sender-account mode)
and ``pop3:ADDRESS`` (the POP-before-SMTP account, POP3 ``AUTH XOAUTH2``). ``OAuth2Logins``
makes the providers, keeps them across a reload that leaves their settings unchanged (so a
reload fetches no new token), and hands each connection a ``TokenSource`` that remembers
which token it gave, so a login the server refused can forget exactly that token and try
once more with a fresh one.

Events: ``smarthost.oauth2_token`` (a token was fetched: for which login, from which endpoint,
how long it lives; never the token), ``smarthost.token_failed`` (the endpoint gave none: the
mail waits; once an hour per login), ``smarthost.token_ok`` (it works again),
``smarthost.oauth2_warning`` (a rotated refresh token could not be written back).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from mailpipe.core.errors import Reply
from mailpipe.core.plugin import PluginContext
from mailpipe.core.settings import Account, OAuth2Settings

from ..oauth2 import TokenError, TokenProvider
from .alerts import Alerts
from .auth import LoginFailed
from .options import AuthOptions


class TokenUnavailable(LoginFailed):
    """No access token could be had from the token endpoint: a temporary failure, not a refused login."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply, rejected=False)


def login_label(auth: AuthOptions) -> str:
    """The credentials label of ``auth.mode: login``."""
    return f"login:{auth.username}"


def account_label(account: Account) -> str:
    """The credentials label of an account's login in sender-account mode."""
    return f"sender-account:{account.username}"


def pop3_label(account: Account) -> str:
    """The label of an account's POP3 login (POP-before-SMTP)."""
    return f"pop3:{account.address.lower()}"


class TokenSource:
    """What one connection's login calls for its XOAUTH2 token; remembers the token it gave (``last``)."""

    def __init__(self, logins: OAuth2Logins, label: str, provider: TokenProvider) -> None:
        self.logins = logins
        self.label = label
        self.provider = provider
        self.last: str | None = None

    async def __call__(self) -> str:
        """The login's access token; raises ``TokenUnavailable`` (temporary, secret-free) when none can be had."""
        fetches = self.provider.fetches
        try:
            token = await self.provider.token()
        except TokenError as exc:
            self.logins.failed(self.label, self.provider, exc)
            raise TokenUnavailable(Reply(451, "4.7.0", f"no OAuth2 token for {self.label}: {exc.text}")) from None
        if self.provider.fetches != fetches:
            self.logins.fetched(self.label, self.provider, token.lifetime)
        self.last = token.value
        return token.value

    def refused(self) -> bool:
        """The server refused the token given last: forget it (True when there was one to forget)."""
        if self.last is None:
            return False
        self.provider.invalidate(self.last)
        return True


class OAuth2Logins:
    """Token providers of one smarthost instance, by login label."""

    def __init__(self, context: PluginContext, auth: AuthOptions, accounts: list[Account], alerts: Alerts,
                 timeout: float) -> None:
        self.context = context
        self.alerts = alerts
        self.timeout = timeout
        self.providers: dict[str, TokenProvider] = {}
        if auth.mode == "login" and auth.oauth2 is not None:
            self._add(login_label(auth), auth.oauth2)
        if auth.mode == "sender-account":
            for account in accounts:
                if account.oauth2 is not None:
                    self._add(account_label(account), account.oauth2)
        if auth.mode == "pop-before-smtp" and accounts and accounts[0].oauth2 is not None:
            self._add(pop3_label(accounts[0]), accounts[0].oauth2)

    def _add(self, label: str, settings: OAuth2Settings) -> None:
        self.providers[label] = TokenProvider(settings, now=self.context.clock.now, resolve=self.context.resolve_path,
                                              timeout=self.timeout, warn=self._warner(label))

    def _warner(self, label: str) -> Callable[[str], None]:
        def warn(text: str) -> None:
            self.context.emit("smarthost.oauth2_warning", f"{label}: {text}", level="warning", login=label)

        return warn

    def take_over(self, old: OAuth2Logins) -> None:
        """Keep the providers (and their cached tokens) of ``old`` whose settings did not change."""
        for label, provider in old.providers.items():
            mine = self.providers.get(label)
            if mine is not None and mine.settings == provider.settings:
                provider.warn = self._warner(label)
                provider.now = self.context.clock.now
                provider.resolve = self.context.resolve_path
                self.providers[label] = provider

    def source(self, label: str) -> TokenSource | None:
        """A token source for one connection of the login ``label`` (None: the login has no oauth2)."""
        provider = self.providers.get(label)
        return TokenSource(self, label, provider) if provider is not None else None

    def fetched(self, label: str, provider: TokenProvider, lifetime: float) -> None:
        """A token was fetched for ``label``: one event (and ``token_ok`` when it had failed before)."""
        settings = provider.settings
        if self.alerts.clear("smarthost.token_failed", label):
            self.context.emit("smarthost.token_ok", f"{label}: the token endpoint {settings.token_url} works again",
                              login=label)
        self.context.emit("smarthost.oauth2_token",
                          f"{label}: fetched an OAuth2 access token ({settings.flow}, client {settings.client_id}) "
                          f"from {settings.token_url}, valid for {lifetime:.0f}s",
                          login=label, flow=settings.flow, lifetime=lifetime)

    def warnings(self) -> list[str]:
        """For ``pipeline check``: files of the OAuth2 settings that cannot be read, or that others may read."""
        out: list[str] = []
        for label, provider in self.providers.items():
            s = provider.settings
            files: list[tuple[str, Path, bool]] = []
            if s.refresh_token_file is not None:
                files.append(("refresh_token_file", s.refresh_token_file, True))
            if s.client_certificate is not None:
                files += [("client_certificate.cert_file", s.client_certificate.cert_file, False),
                          ("client_certificate.key_file", s.client_certificate.key_file, True)]
            if s.ca_file is not None:
                files.append(("ca_file", s.ca_file, False))
            for key, path, secret in files:
                problem = _file_problem(self.context.resolve_path(path), secret)
                if problem:
                    out.append(f"{label}: oauth2.{key} {problem}")
        return out

    def failed(self, label: str, provider: TokenProvider, exc: TokenError) -> None:
        """The endpoint gave no token for ``label``: one event an hour while it lasts."""
        self.alerts.emit("smarthost.token_failed", label,
                         f"{label}: {exc.text}. Mail for this login stays queued (temporary failure) until a "
                         "token can be had", login=label, status=exc.status, error=exc.error)


def _file_problem(path: Path, secret: bool) -> str | None:
    """Why ``path`` cannot serve (unreadable, empty; a secret others may read), or None."""
    try:
        with path.open("rb") as fh:
            empty = not fh.read(1)
        mode = path.stat().st_mode
    except OSError as exc:
        return f"{path} cannot be read: {exc.strerror or exc}"
    if empty:
        return f"{path} is empty"
    if secret and mode & 0o077 and os.geteuid() == path.stat().st_uid:
        return f"{path} may be read by other users (mode {mode & 0o777:o}); chmod 600 it"
    return None
