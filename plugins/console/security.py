"""Logins, sessions and CSRF tokens of the web console.

- Sessions live on the server, and only for logged-in users: the cookie holds only a
  random id (HttpOnly, SameSite=Strict, Secure over TLS); logging out or timing out
  forgets it. An anonymous visitor gets no server-side state at all, so no number of
  visits to the login page can push a logged-in session out of the store.
- The login form is protected by a signed double-submit token (``LoginTokens``): the
  same token in a cookie and in the form, signed with a key only this console knows,
  valid for ``session_timeout``. After login every session has its own CSRF token;
  every POST must carry it in the ``csrf`` form field.
- Passwords are checked against argon2 hashes (in a thread, the event loop keeps
  serving); an unknown user costs the same as a wrong password.
- Throttling (``LoginThrottle``): after ``login_attempts`` failures from one client
  address within ``login_pause``, logins from that address are refused for that long;
  failures for one user name only slow that name's logins down (so a guesser elsewhere
  cannot lock the real user out).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from mailpipe.core.throttle import FailureWindow

_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))
MAX_SESSIONS = 10_000
SLOWDOWN_STEP = 1.0
"""Seconds added to each login of a user name per failure beyond ``login_attempts`` ..."""
MAX_SLOWDOWN = 5.0
"""... up to this many."""


@dataclass
class ConsoleSession:
    """One logged-in browser's session: who, its CSRF token, when last seen."""

    id: str
    csrf: str
    user: str
    last_seen: float = field(default_factory=time.monotonic)
    flash: str | None = None


class SessionStore:
    """Server-side sessions of logged-in users, the least recently used dropped beyond ``MAX_SESSIONS``."""

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

    def new(self, user: str) -> ConsoleSession:
        """A fresh session for ``user``, who just logged in (a new id and CSRF token: never reuse an old id)."""
        session = ConsoleSession(secrets.token_urlsafe(32), secrets.token_urlsafe(32), user)
        self._sessions[session.id] = session
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)
        return session

    def drop(self, sid: str) -> None:
        """Forget a session (logout, or replaced at a new login)."""
        self._sessions.pop(sid, None)


def csrf_ok(session: ConsoleSession | None, token: object) -> bool:
    """Whether a submitted form's token is this session's."""
    return session is not None and isinstance(token, str) and secrets.compare_digest(session.csrf, token)


class LoginTokens:
    """Signed double-submit tokens for the login form: nothing is stored per visitor.

    ``issue()`` gives ``nonce.issued.signature``; the console puts it in a cookie and in
    the form. ``valid(cookie, form)`` holds when both are the same token, signed with this
    console's key (made at start, so a restart expires open login forms) and not older
    than ``ttl`` seconds.
    """

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._key = secrets.token_bytes(32)

    def _sign(self, body: str) -> str:
        return hmac.new(self._key, body.encode(), hashlib.sha256).hexdigest()

    def issue(self) -> str:
        """A new token for one login form."""
        body = f"{secrets.token_urlsafe(16)}.{int(time.time())}"
        return f"{body}.{self._sign(body)}"

    def valid(self, cookie: object, form: object) -> bool:
        """Whether the login form's token and the cookie's are one valid, unexpired token of this console."""
        if not isinstance(cookie, str) or not isinstance(form, str) or not secrets.compare_digest(cookie, form):
            return False
        body, _, signature = form.rpartition(".")
        if not body or not secrets.compare_digest(self._sign(body), signature):
            return False
        try:
            issued = int(body.rpartition(".")[2])
        except ValueError:
            return False
        return 0 <= time.time() - issued <= self.ttl


class LoginThrottle:
    """Failed console logins: refused per client address, slowed per user name.

    ``blocked(address)`` is true after ``attempts`` failures from ``address`` within
    ``pause`` seconds; ``slowdown(user)`` is how long a login for ``user`` waits first
    (``SLOWDOWN_STEP`` per failure of that name beyond ``attempts``, at most ``MAX_SLOWDOWN``).
    """

    def __init__(self, attempts: int, pause: float) -> None:
        self.attempts = attempts
        self.by_address = FailureWindow(pause)
        self.by_user = FailureWindow(pause)

    def blocked(self, address: str) -> bool:
        """Whether logins from ``address`` are refused now."""
        return self.by_address.count(address) >= self.attempts

    def slowdown(self, user: str) -> float:
        """Seconds a login for ``user`` waits before its password is checked."""
        beyond = self.by_user.count(user) - self.attempts + 1
        return min(SLOWDOWN_STEP * beyond, MAX_SLOWDOWN) if beyond > 0 else 0.0

    def failed(self, address: str, user: str) -> None:
        """A wrong password (or unknown user) from ``address`` for ``user``."""
        self.by_address.add(address)
        self.by_user.add(user)

    def succeeded(self, address: str, user: str) -> None:
        """A login worked: the address and the name start afresh."""
        self.by_address.clear(address)
        self.by_user.clear(user)


async def verify_password(stored_hash: str | None, password: str) -> bool:
    """Check ``password`` against an argon2 hash in a worker thread; None hash: always False."""

    def check() -> bool:
        try:
            return _hasher.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(check)
