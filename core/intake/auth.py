"""Relay logins: AUTH PLAIN/LOGIN against ``relay.users`` (argon2 hashes), only over TLS.

The argon2 check runs in a worker thread, at most ``WORKERS`` at once, so guessing clients
never stall the event loop that every other client, delivery and the console share. An
unknown user costs the same as a known one (a dummy hash with the same parameters is
checked), so the answer time tells no user names. A client address that keeps failing is
slowed (each failure answered after ``auth_failure_delay`` × its recent failures) and then
cut (``421``, connection closed, further AUTH refused until its failures age out of
``auth_failure_window``) — Postfix's ``smtpd_error_sleep_time``/``smtpd_hard_error_limit``
and anvil's auth rate limit.

Every failure is logged as one stable line a fail2ban filter matches (docs/operations.md)::

    WARNING mailpipe.intake.auth: relay login failed from 192.0.2.7: mechanism PLAIN, user 'bob', 3 of 10

The client address comes first and the client-chosen user name last (``repr``-quoted), so
no user name can forge the address a filter bans.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets

from argon2 import PasswordHasher, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError

from ..settings import IntakeSettings, RelayUser
from ..throttle import FailureWindow
from ..workers.slot import current

log = logging.getLogger("mailpipe.intake.auth")
_hasher = PasswordHasher()

WORKERS = 2
"""argon2 checks running at once (each takes ~64 MB and a core for ~0.1 s); more wait their turn."""


def hash_password(password: str) -> str:
    """An argon2id hash for ``relay.users[].password_hash`` (``pipeline hash-password``)."""
    return _hasher.hash(password)


@functools.cache
def _dummy_hash(like: str) -> str:
    """A hash of a random password made with the parameters of ``like`` (checked for unknown users)."""
    try:
        hasher = PasswordHasher.from_parameters(extract_parameters(like))
    except (InvalidHashError, ValueError):
        hasher = _hasher
    return hasher.hash(secrets.token_hex(16))


def _verify(stored: str | None, like: str, password: bytes) -> bool:
    """True when ``password`` matches ``stored``; an unknown user (None) is checked against a dummy hash."""
    try:
        return _hasher.verify(stored or _dummy_hash(like), password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


class RelayLogin:
    """Checks relay logins for one intake: off the event loop, at one cost, slowed and cut per client address.

    Called by ``GatewaySMTP``'s AUTH mechanisms: ``cut(peer)`` before a login is tried,
    ``verify`` for the check, ``failed`` after a wrong login (it waits the slow-down and
    says whether the address is now cut).
    """

    def __init__(self, users: list[RelayUser], limits: IntakeSettings) -> None:
        self.users = {u.username: u.password_hash for u in users}
        self._like = users[0].password_hash if users else ""
        # For the whole gateway: the kernel spreads a client's connections over the workers, each counts its share.
        self.max_failures = current().share(limits.max_auth_failures) or 1
        self.delay = limits.auth_failure_delay
        self.failures = FailureWindow(limits.auth_failure_window)
        self._workers = asyncio.Semaphore(WORKERS)

    def cut(self, peer: str) -> bool:
        """Whether ``peer`` failed ``max_auth_failures`` times within the window (its AUTH is refused)."""
        return self.failures.count(peer) >= self.max_failures

    async def verify(self, username: str, password: bytes) -> bool:
        """Whether ``password`` is ``username``'s, checked in a worker thread (at most ``WORKERS`` at once)."""
        stored = self.users.get(username)
        async with self._workers:
            return await asyncio.to_thread(_verify, stored, self._like, password)

    async def failed(self, peer: str, username: str, mechanism: str) -> bool:
        """Record a failed login of ``peer`` (logged in one line), wait the slow-down; True when ``peer`` is now cut."""
        count = self.failures.add(peer)
        log.warning("relay login failed from %s: mechanism %s, user %r, %d of %d", peer, mechanism, username,
                    count, self.max_failures)
        if count >= self.max_failures:
            log.warning("relay logins from %s refused for %.0fs: %d failures", peer,
                        self.failures.retry_after(peer), count)
            return True
        if self.delay:
            await asyncio.sleep(self.delay * count)
        return False
