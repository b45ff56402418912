"""Options of the ``console`` plugin: where the web console listens and who may log in."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, model_validator

from mailpipe.core.settings import CertFile, Duration, HostPort, KeyFile, RelayUser, Strict, check_tls_files


class ConsoleUser(RelayUser):
    """A console login: ``username`` and an argon2 ``password_hash`` (``pipeline hash-password``)."""


class ConsoleOptions(Strict):
    """Options of ``chain: - console: {...}``."""

    listen: HostPort = Field("127.0.0.1:8025", description="host:port of the web console")
    users: list[ConsoleUser] = Field(min_length=1, description="who may log in")
    secure_cookies: bool | Literal["auto"] = Field(
        "auto", description="mark cookies Secure: true, false, or auto (when served over TLS)"
    )
    session_timeout: Duration = Field(3600.0, gt=0, description="log out after this long without a request")
    tls: bool = Field(False, description="serve HTTPS with cert and key")
    cert: CertFile | None = None
    key: KeyFile | None = None
    login_attempts: int = Field(5, ge=1, description="failed logins per client address before a pause "
                                                    "(beyond it, failures for one user name only slow its logins)")
    login_pause: Duration = Field(300.0, gt=0, description="how long an address's logins are refused after too "
                                                           "many failures")
    refresh: Duration = Field(2.0, gt=0, description="how often the live parts (sessions) refresh")

    @model_validator(mode="after")
    def _tls(self, info: ValidationInfo) -> ConsoleOptions:
        if self.cert is not None and not self.tls:
            self.tls = True
        if self.tls:
            check_tls_files("true", self.cert, self.key, info)
        names = [u.username for u in self.users]
        if len(set(names)) != len(names):
            raise ValueError("each console username may appear only once")
        return self
