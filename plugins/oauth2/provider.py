"""``TokenProvider``: one OAuth2 client's access tokens, fetched when needed and cached until shortly before expiry.

One provider stands for one login (an ``oauth2:`` block); every connection of that login asks
it, so a token is fetched once per lifetime per gateway process, not once per connection.
With several nodes on one queue, each node keeps its own cache (a token is fetched once per
node and lifetime): tokens are never written to the shared queue.

A failed fetch is remembered for ``FAILURE_PAUSE`` seconds: connections asking meanwhile get
the same ``TokenError`` without another request, so a broken endpoint or a revoked secret
is not hammered by every waiting message.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from mailpipe.core.settings import OAuth2Settings
from mailpipe.core.tlsfiles import client_tls_context

from .assertion import ASSERTION_TYPE, CredentialError, client_assertion
from .tokenfile import read_token, write_token

#: Seconds a token is renewed before it expires: a tenth of its lifetime, at most this.
EARLY_RENEWAL = 300.0
#: Assumed lifetime of a token whose reply gives no ``expires_in``.
DEFAULT_LIFETIME = 300.0
#: After a failed fetch, callers get the same error for this long without a new request.
FAILURE_PAUSE = 30.0


@dataclass(frozen=True)
class Token:
    """An access token and when it stops being used (the gateway clock's time)."""

    value: str = field(repr=False)
    expires_at: float
    fetched_at: float
    renew_at: float

    @property
    def lifetime(self) -> float:
        """Seconds the endpoint granted it for."""
        return self.expires_at - self.fetched_at


class TokenError(Exception):
    """No token could be had; the text names the endpoint and the reason, never a secret or a token.

    ``status`` is the HTTP status of the endpoint's reply (None when there was none),
    ``error`` the OAuth2 error code (``invalid_client``, ``invalid_grant``, ...) when given.
    """

    def __init__(self, text: str, *, status: int | None = None, error: str | None = None) -> None:
        super().__init__(text)
        self.text = text
        self.status = status
        self.error = error


class TokenProvider:
    """Access tokens of one OAuth2 client (``settings``), shared by every connection of its login.

    ``now`` is the gateway clock, ``resolve`` makes config paths absolute, ``timeout`` bounds
    each request, ``warn`` is told (secret-free text) what the administrator should know although a
    token was had (a rotated refresh token that could not be written back). ``fetches`` counts the
    requests made, ``rotations`` the refresh tokens the endpoint replaced.
    """

    def __init__(self, settings: OAuth2Settings, *, now: Callable[[], float],
                 resolve: Callable[[Path], Path] = lambda p: p, timeout: float = 30.0,
                 warn: Callable[[str], None] = lambda text: None) -> None:
        self.settings = settings
        self.warn = warn
        self.now = now
        self.resolve = resolve
        self.timeout = timeout
        self.fetches = 0
        self.rotations = 0
        self._token: Token | None = None
        self._failure: TokenError | None = None
        self._failure_until = 0.0
        self._lock = asyncio.Lock()
        self._refresh_token = settings.refresh_token.get_secret_value() if settings.refresh_token else None

    @property
    def endpoint(self) -> str:
        """The token endpoint (what texts name)."""
        return self.settings.token_url

    def cached(self) -> Token | None:
        """The cached token while it is not due for renewal, else None."""
        token = self._token
        return token if token is not None and self.now() < token.renew_at else None

    async def token(self) -> Token:
        """A valid access token: the cached one, or one fetched now (one request at a time). Raises ``TokenError``."""
        token = self.cached()
        if token is not None:
            return token
        async with self._lock:
            token = self.cached()
            if token is not None:
                return token
            if self._failure is not None and self.now() < self._failure_until:
                failure = self._failure
                raise TokenError(failure.text, status=failure.status, error=failure.error)
            try:
                token = await self._fetch()
            except TokenError as exc:
                self._failure, self._failure_until = exc, self.now() + FAILURE_PAUSE
                raise
            self._failure, self._token = None, token
            return token

    def invalidate(self, value: str) -> bool:
        """Forget the cached token when it is ``value`` (a server refused it); True when it was forgotten.

        A token another connection has already replaced stays: the next ``token()`` gives the new one.
        """
        if self._token is not None and self._token.value == value:
            self._token = None
            return True
        return False

    def secrets(self) -> list[str]:
        """Strings that must never be shown: the client secret, the refresh token, the current access token."""
        out = [self.settings.client_secret.get_secret_value()] if self.settings.client_secret else []
        if self._refresh_token:
            out.append(self._refresh_token)
        if self._token is not None:
            out.append(self._token.value)
        return out

    # -- one request ------------------------------------------------------------------------

    def _form(self) -> dict[str, str]:
        s = self.settings
        form = {"grant_type": s.flow, "client_id": s.client_id}
        if s.flow == "refresh_token":
            form["refresh_token"] = self._current_refresh_token()
        if s.scope:
            form["scope"] = s.scope
        if s.client_secret is not None:
            form["client_secret"] = s.client_secret.get_secret_value()
        elif s.client_certificate is not None:
            cert = s.client_certificate
            try:
                # Wall-clock time: the endpoint checks iat/exp against its own clock.
                form["client_assertion"] = client_assertion(
                    s.client_id, s.token_url, self.resolve(cert.cert_file), self.resolve(cert.key_file), time.time())
            except CredentialError as exc:
                raise TokenError(f"OAuth2 client {s.client_id}: {exc}") from None
            form["client_assertion_type"] = ASSERTION_TYPE
        return form

    def _current_refresh_token(self) -> str:
        path = self.settings.refresh_token_file
        if path is None:
            assert self._refresh_token is not None
            return self._refresh_token
        path = self.resolve(path)
        try:
            self._refresh_token = read_token(path)
        except OSError as exc:
            raise TokenError(f"refresh token file {path} cannot be read: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise TokenError(str(exc)) from None
        return self._refresh_token

    def _tls(self) -> ssl.SSLContext:
        ca = self.settings.ca_file
        try:
            return client_tls_context(ca_file=self.resolve(ca) if ca else None)
        except (OSError, ssl.SSLError) as exc:
            raise TokenError(f"ca_file {ca} of the token endpoint cannot be used: {exc}") from None

    async def _fetch(self) -> Token:
        form = self._form()
        what = f"token endpoint {self.endpoint} ({self.settings.flow}, client {self.settings.client_id})"
        started = self.now()
        self.fetches += 1
        try:
            async with httpx.AsyncClient(verify=self._tls(), timeout=self.timeout, follow_redirects=False) as client:
                response = await client.post(self.endpoint, data=form, headers={"Accept": "application/json"})
        except httpx.TimeoutException:
            raise TokenError(f"{what}: no answer within {self.timeout:.0f}s") from None
        except httpx.HTTPError as exc:
            raise TokenError(f"{what}: {_describe(exc)}") from None
        body = _json(response)
        if response.status_code != 200:
            raise self._refused(what, response.status_code, body, form)
        value = body.get("access_token") if body is not None else None
        if not isinstance(value, str) or not value:
            raise TokenError(f"{what}: the reply (HTTP 200) holds no access_token", status=200)
        token_type = str(body.get("token_type", "bearer")) if body is not None else "bearer"
        if token_type.lower() != "bearer":
            raise TokenError(f"{what}: token_type {token_type!r} is not Bearer", status=200)
        lifetime = _seconds(body.get("expires_in")) if body is not None else None
        lifetime = DEFAULT_LIFETIME if lifetime is None or lifetime <= 0 else lifetime
        rotated = body.get("refresh_token") if body is not None else None
        if self.settings.flow == "refresh_token" and isinstance(rotated, str) and rotated \
                and rotated != self._refresh_token:
            self._rotate(rotated)
        margin = min(EARLY_RENEWAL, lifetime / 10)
        return Token(value, started + lifetime, started, started + lifetime - margin)

    def _rotate(self, new: str) -> None:
        """The endpoint issued a new refresh token: use it from now on, and keep it in its file."""
        self._refresh_token = new
        self.rotations += 1
        path = self.settings.refresh_token_file
        if path is None:
            self.warn(f"token endpoint {self.endpoint} rotated the refresh token of client {self.settings.client_id}; "
                      "the new one is kept in memory only (until the gateway stops): use refresh_token_file "
                      "so a rotated refresh token survives a restart")
            return
        path = self.resolve(path)
        try:
            write_token(path, new)
        except OSError as exc:
            self.warn(f"token endpoint {self.endpoint} rotated the refresh token but {path} cannot be written "
                      f"({exc.strerror or exc}); the new one is kept in memory only, until the gateway stops")

    def _refused(self, what: str, status: int, body: dict[str, Any] | None, form: dict[str, str]) -> TokenError:
        error = str(body.get("error", "")) if body else ""
        description = " ".join(str(body.get("error_description", "")).split())[:300] if body else ""
        detail = ": ".join(p for p in (error, description) if p) or "no OAuth2 error in the reply"
        for secret in [*self.secrets(), *(form.get(k, "") for k in ("client_secret", "refresh_token",
                                                                     "client_assertion"))]:
            if secret and len(secret) >= 4:
                detail = detail.replace(secret, "***")
        hint = _HINTS.get(error, "")
        return TokenError(f"{what} refused (HTTP {status}): {detail}{hint}", status=status, error=error or None)


_HINTS = {
    "invalid_client": " (check client_id and client_secret or the certificate uploaded to the app registration)",
    "invalid_grant": " (the refresh token is expired or revoked: consent again and store the new refresh token)",
    "unauthorized_client": " (the app registration may not use this flow)",
    "invalid_scope": " (check scope)",
}


def _json(response: httpx.Response) -> dict[str, Any] | None:
    try:
        data = json.loads(response.content)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _seconds(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _describe(exc: httpx.HTTPError) -> str:
    err: BaseException | None = exc
    for _ in range(5):  # httpx wraps httpcore's error, which wraps the ssl module's
        if err is None:
            break
        if isinstance(err, ssl.SSLCertVerificationError):
            return f"TLS certificate not trusted ({err.verify_message})"
        if isinstance(err, ssl.SSLError):
            return f"TLS error: {err.reason or err}"
        err = err.__cause__ or err.__context__
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"cannot connect: {text}"[:300]
