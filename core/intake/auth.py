"""Relay logins: AUTH PLAIN/LOGIN against ``relay.users`` (argon2 hashes), only over TLS."""

from __future__ import annotations

import logging

from aiosmtpd.smtp import AuthResult, LoginPassword
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from ..settings import RelayUser

log = logging.getLogger("mailpipe.intake.auth")
_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    """An argon2id hash for ``relay.users[].password_hash`` (``pipeline hash-password``)."""
    return _hasher.hash(password)


class RelayAuthenticator:
    """aiosmtpd authenticator: a login succeeds when the password matches the user's hash.

    A failed login is logged with the user name and client address, never the password.
    """

    def __init__(self, users: list[RelayUser]) -> None:
        self.users = {u.username: u.password_hash for u in users}

    def __call__(self, server: object, session: object, envelope: object, mechanism: str,
                 auth_data: object) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        username = auth_data.login.decode("utf-8", "replace")
        stored = self.users.get(username)
        try:
            if stored is not None and _hasher.verify(stored, auth_data.password):
                return AuthResult(success=True, auth_data=username)
        except (VerificationError, InvalidHashError):
            pass
        peer = getattr(session, "peer", None)
        log.warning("relay login failed for user %r from %s (%s)", username, peer and peer[0], mechanism)
        return AuthResult(success=False, handled=False)
