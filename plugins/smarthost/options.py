"""Options of the ``smarthost`` plugin (the seed page's "send messages through ISP's mail server").

Validated when the configuration is loaded, so a mistake is refused before
anything starts. The checks that need the rest of the configuration (the
Internet Mail Accounts) use the validation context ``{"settings": Settings}``
when the loader gives it, and are repeated by the plugin at start.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator

from mailpipe.core.settings import Account, CaFile, Duration, OAuth2Settings, Settings, Strict, split_host_port
from mailpipe.plugins.limits.options import BackoffOptions, LimitSpec

AuthMode = Literal["none", "login", "pop-before-smtp", "sender-account"]
Mechanism = Literal["auto", "plain", "login", "cram-md5", "xoauth2"]
TlsMode = Literal["none", "starttls", "implicit"]


class AuthOptions(Strict):
    """``auth:`` — "Outgoing server (SMTP) requires authentication" and how.

    ``mode``: ``none`` (no login), ``login`` ("Log on using": one name and
    password for all mail), ``pop-before-smtp`` ("Wait until logged into
    Internet Mail Account": a POP3 login to the first account first),
    ``sender-account`` ("Log on using sender's Internet Mail Account settings").
    """

    mode: AuthMode = "none"
    mechanism: Mechanism = "auto"
    username: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = Field(None, description="xoauth2: the access token")
    token_command: list[str] | str | None = Field(
        None, description="xoauth2: a command that prints an access token (list: argv; string: run by /bin/sh)"
    )
    oauth2: OAuth2Settings | None = Field(None, description="xoauth2: fetch access tokens from this OAuth2 client")
    pop_login_window: Duration = Field(600.0, description="pop-before-smtp: log in again when older than this")
    login_failure_pause: Duration = Field(
        300.0, description="after a rejected login, do not try the same login again for this long"
    )

    @field_validator("username")
    @classmethod
    def _username(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("expected a login name, got an empty string")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> AuthOptions:
        token_sources = [x for x in (self.token, self.token_command, self.oauth2) if x is not None]
        has_secret = self.password is not None or bool(token_sources)
        if self.mode == "login":
            if not self.username:
                raise ValueError("mode: login needs username (the account name the ISP gave you)")
            if self.mechanism == "xoauth2":
                if len(token_sources) != 1:
                    raise ValueError("mechanism: xoauth2 needs exactly one of token or token_command, or oauth2 "
                                     "(tokens mailpipe fetches itself)")
                if self.password is not None:
                    raise ValueError("mechanism: xoauth2 uses token, token_command or oauth2, not password")
            else:
                if self.password is None:
                    raise ValueError(f"mode: login with mechanism: {self.mechanism} needs password")
                if token_sources:
                    raise ValueError("token, token_command and oauth2 are only used with mechanism: xoauth2")
        else:
            if self.username is not None or has_secret:
                raise ValueError(
                    f"username, password, token, token_command and oauth2 are only used with mode: login "
                    f"(mode: {self.mode} takes the login from accounts; give an account oauth2: there)"
                )
            if self.mechanism == "xoauth2":
                raise ValueError("mechanism: xoauth2 is only available with mode: login (with sender-account, an "
                                 "account with oauth2: logs in with XOAUTH2 by itself)")
        if self.pop_login_window <= 0:
            raise ValueError("pop_login_window must be longer than 0s")
        return self

    @property
    def sends_credentials(self) -> bool:
        """Whether an SMTP login (AUTH) is made with this configuration."""
        return self.mode in ("login", "sender-account")


class SmarthostOptions(Strict):
    """Options of ``chain: - smarthost: {...}`` (the seed page's "Server" and friends)."""

    server: list[str] = Field(description="host, host:port, or a list of them tried in order")
    port: int | None = Field(None, ge=1, le=65535, description="default: 465 with tls: implicit, else delivery.port")
    tls: TlsMode = "starttls"
    ca_file: CaFile | None = None
    verify: bool = True
    allow_plaintext_auth: bool = Field(
        False, description="allow sending passwords over a connection without TLS (SMTP with tls: none, POP3 USER/PASS)"
    )
    timeout: Duration | None = Field(None, description="per-step time limit; default delivery.timeout")
    domains: list[str] = Field(default_factory=list, description="only these recipient domains (default: all)")
    max_connections: int = Field(4, ge=1, le=1000, description="parallel connections to the smarthost")
    max_messages_per_connection: int = Field(100, ge=1, description="then the connection is closed and a new one made")
    idle_timeout: Duration = Field(30.0, description="close a reused connection after this long unused")
    auth: AuthOptions = Field(default_factory=AuthOptions)
    limits: list[LimitSpec] = Field(
        default_factory=list, description="sending limits per account (the login), sender or domain; docs/policy.md"
    )
    backoff: BackoffOptions = Field(default_factory=BackoffOptions,
                                    description='how delivery slows when the smarthost answers "too many ..."')

    @field_validator("server", mode="before")
    @classmethod
    def _servers(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list):
            if not value:
                raise ValueError("expected at least one server")
            out = []
            for item in value:
                if not isinstance(item, str) or not item.strip() or any(c.isspace() for c in item.strip()):
                    raise ValueError(f"expected a host name, address or host:port, got {item!r}")
                split_host_port(item.strip(), 25)  # raises on a bad port
                out.append(item.strip())
            return out
        return value

    @field_validator("domains")
    @classmethod
    def _domains(cls, value: list[str]) -> list[str]:
        return [d.strip().lower().lstrip("@") for d in value]

    @model_validator(mode="after")
    def _no_plaintext_secrets(self, info: ValidationInfo) -> SmarthostOptions:
        if self.tls == "none" and self.auth.sends_credentials and not self.allow_plaintext_auth:
            raise ValueError(
                f"auth.mode: {self.auth.mode} with tls: none would send the password without encryption; "
                "use tls: starttls or tls: implicit, or set allow_plaintext_auth: true to allow it"
            )
        if self.idle_timeout <= 0:
            raise ValueError("idle_timeout must be longer than 0s")
        settings = (info.context or {}).get("settings") if info.context else None
        if isinstance(settings, Settings):
            problem = self.accounts_problem(settings.accounts)
            if problem:
                raise ValueError(problem)
        return self

    def accounts_problem(self, accounts: list[Account]) -> str | None:
        """What is wrong with ``accounts`` for this auth mode, or None (needs the whole config)."""
        mode = self.auth.mode
        if mode == "pop-before-smtp":
            if not accounts:
                return "auth.mode: pop-before-smtp logs into the first entry of accounts, but accounts is empty"
            first = accounts[0]
            if first.pop3 is None:
                return f"auth.mode: pop-before-smtp needs accounts[0] ({first.address}) to have pop3: {{server: ...}}"
            if first.pop3.tls == "none" and not first.pop3.apop and not self.allow_plaintext_auth:
                return (
                    f"accounts[0] ({first.address}) has pop3.tls: none, so POP-before-SMTP would send the "
                    "password without encryption; use pop3.tls: starttls or implicit, pop3.apop: true, "
                    "or set allow_plaintext_auth: true in the smarthost options to allow it"
                )
        if mode == "sender-account" and not accounts:
            return "auth.mode: sender-account looks up each sender in accounts, but accounts is empty"
        return None

    def endpoints(self, default_port: int) -> list[tuple[str, int]]:
        """``(host, port)`` of each server in the order they are tried."""
        port = self.port or (465 if self.tls == "implicit" else default_port)
        return [split_host_port(s, port) for s in self.server]
