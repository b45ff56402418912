"""A recording SMTP server (aiosmtpd, in process, in its own thread) for tests.

It keeps every message it accepted (envelope and exact bytes) and can be told to
answer particular recipients, or whole stages, with a given reply so that tests
can make a real SMTP server fail in the ways real servers fail.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


@dataclass
class Received:
    """One message as the sink received it."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    peer: Any
    auth_login: str | None = None
    helo: str | None = None


@dataclass
class SinkBehaviour:
    """Replies the sink gives instead of accepting.

    ``rcpt`` maps a recipient address to the reply for its RCPT; ``data`` is the
    reply to the final dot (None: accept); ``mail`` the reply to MAIL FROM;
    ``data_delay`` seconds a slow server takes before answering the final dot.
    """

    rcpt: dict[str, str] = field(default_factory=dict)
    mail: str | None = None
    data: str | None = None
    data_delay: float = 0.0


class _Handler:
    def __init__(self, sink: RecordingSink) -> None:
        self.sink = sink

    async def handle_MAIL(self, server, session, envelope, address, mail_options):  # noqa: ANN001
        if self.sink.behaviour.mail:
            return self.sink.behaviour.mail
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: ANN001
        reply = self.sink.behaviour.rcpt.get(address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001
        if self.sink.behaviour.data_delay:
            await asyncio.sleep(self.sink.behaviour.data_delay)
        if self.sink.behaviour.data:
            return self.sink.behaviour.data
        login = session.auth_data
        if isinstance(login, LoginPassword):
            login = login.login.decode()
        msg = Received(
            mail_from=envelope.mail_from,
            rcpt_tos=list(envelope.rcpt_tos),
            data=bytes(envelope.original_content),
            peer=session.peer,
            auth_login=login,
            helo=session.host_name,
        )
        with self.sink._cond:
            self.sink.messages.append(msg)
            self.sink._cond.notify_all()
        return "250 2.0.0 OK queued"


class RecordingSink:
    """An aiosmtpd server on ``host:port`` that records what it accepts.

    Use as a context manager. ``wait_for(n)`` blocks (bounded) until ``n``
    messages have arrived. ``auth`` maps usernames to passwords; when given, the
    sink offers AUTH (``auth_mechanisms`` restricts which) and records the login.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        auth: dict[str, str] | None = None,
        auth_require_tls: bool = False,
        tls_context: Any = None,
        authenticator: Callable[..., AuthResult] | None = None,
        server_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.messages: list[Received] = []
        self.behaviour = SinkBehaviour()
        self._cond = threading.Condition()
        kwargs: dict[str, Any] = dict(server_kwargs or {})
        if auth is not None or authenticator is not None:
            kwargs["authenticator"] = authenticator or self._password_authenticator(auth or {})
            kwargs["auth_require_tls"] = auth_require_tls
        if tls_context is not None:
            kwargs["tls_context"] = tls_context
        self.host = host
        self._requested_port = port or _free_port(host)
        self.controller = Controller(
            _Handler(self), hostname=host, port=self._requested_port, server_hostname="sink.test", **kwargs
        )

    @staticmethod
    def _password_authenticator(users: dict[str, str]) -> Callable[..., AuthResult]:
        def authenticate(server: SMTP, session, envelope, mechanism, auth_data):  # noqa: ANN001
            if isinstance(auth_data, LoginPassword):
                user, password = auth_data.login.decode(), auth_data.password.decode()
                if users.get(user) == password:
                    return AuthResult(success=True, auth_data=user)
            return AuthResult(success=False, handled=False)

        return authenticate

    @property
    def port(self) -> int:
        return self._requested_port

    def __enter__(self) -> RecordingSink:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    def wait_for(self, count: int, timeout: float = 20.0) -> list[Received]:
        """Wait until at least ``count`` messages arrived; fail the test after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.messages) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"sink {self.host}:{self.port} got {len(self.messages)} messages, expected {count}"
                    )
                self._cond.wait(left)
            return list(self.messages)


def _free_port(host: str) -> int:
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]
