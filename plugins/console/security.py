"""Logins, sessions and CSRF tokens of the web console.

- Sessions live on the server: the cookie holds only a random id (HttpOnly,
  SameSite=Strict, Secure over TLS); logging out or timing out forgets it.
- Every session, even before login, has a CSRF token; every POST must carry
  it in the ``csrf`` form field.
- Passwords are checked against argon2 hashes (in a thread, the event loop
  keeps serving); an unknown user costs the same as a wrong password.
- Throttling: after ``login_attempts`` failures within ``login_pause`` for a
  user name or a client address, logins from it are refused for that long.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import OrderedDict, defaultdict
from dataclasses import dataclass, field

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))
MAX_SESSIONS = 10_000


@dataclass
class ConsoleSession:
    """One browser's session: who (None before login), its CSRF token, when last seen."""

    id: str
    csrf: str
    user: str | None = None
    last_seen: float = field(default_factory=time.monotonic)
    flash: str | None = None


class SessionStore:
    """Server-side sessions, the oldest dropped beyond ``MAX_SESSIONS``."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._sessions: OrderedDict[str, ConsoleSession] = OrderedDict()

    def get(self, sid: str | None) -> ConsoleSession | None:
        """The live session with this id, touched; None when unknown or timed out."""
        if not sid:
            return None
        session = self._sessions.get(sid)
        if session is None:
            return None
        now = time.monotonic()
        if now - session.last_seen > self.timeout:
            self._sessions.pop(sid, None)
            return None
        session.last_seen = now
        self._sessions.move_to_end(sid)
        return session

    def new(self, user: str | None = None) -> ConsoleSession:
        """A fresh session with a new id and CSRF token (after login: never reuse the old id)."""
        session = ConsoleSession(secrets.token_urlsafe(32), secrets.token_urlsafe(32), user)
        self._sessions[session.id] = session
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)
        return session

    def drop(self, sid: str) -> None:
        self._sessions.pop(sid, None)


def csrf_ok(session: ConsoleSession | None, token: object) -> bool:
    """Whether a submitted form's token is this session's."""
    return session is not None and isinstance(token, str) and secrets.compare_digest(session.csrf, token)


class LoginThrottle:
    """Counts failed logins per user name and per client address."""

    def __init__(self, attempts: int, pause: float) -> None:
        self.attempts, self.pause = attempts, pause
        self._failures: dict[str, list[float]] = defaultdict(list)

    def _recent(self, key: str, now: float) -> list[float]:
        times = [t for t in self._failures.get(key, []) if now - t < self.pause]
        if times:
            self._failures[key] = times
        else:
            self._failures.pop(key, None)
        return times

    def blocked(self, *keys: str) -> bool:
        now = time.monotonic()
        return any(len(self._recent(k, now)) >= self.attempts for k in keys)

    def failed(self, *keys: str) -> None:
        now = time.monotonic()
        for k in keys:
            self._failures[k].append(now)

    def succeeded(self, *keys: str) -> None:
        for k in keys:
            self._failures.pop(k, None)


async def verify_password(stored_hash: str | None, password: str) -> bool:
    """Check ``password`` against an argon2 hash in a worker thread; None hash: always False."""

    def check() -> bool:
        try:
            return _hasher.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(check)
