"""A recording SMTP server (aiosmtpd, in process, in its own thread) for tests.

It keeps every message it accepted (envelope and exact bytes) and can be told to
answer particular recipients, or whole stages, with a given reply so that tests
can make a real SMTP server fail in the ways real servers fail.

It also keeps a log of its TCP connections (``connections``: when each opened
and closed, whether it used TLS, logged in, said QUIT, how many messages it
carried), the number open now (``live``) and the most open at once (``peak``),
so connection reuse, caps and idle closing are asserted where they happen: at
the server.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from .net import free_port


@dataclass
class Received:
    """One message as the sink received it."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    peer: Any
    auth_login: str | None = None
    helo: str | None = None
    tls: bool = False  # the session was encrypted (STARTTLS or implicit TLS)
    started: float = 0.0  # time.monotonic() of MAIL FROM
    data_started: float = 0.0  # time.monotonic() when the whole message had arrived (before any hold)
    finished: float = 0.0  # time.monotonic() of the 250 after the final dot


@dataclass
class Connection:
    """One TCP connection as the sink saw it (times are ``time.monotonic()``)."""

    peer: Any
    opened: float
    closed: float | None = None
    tls: bool = False
    quit: bool = False  # the client said QUIT before the connection ended
    logins: list[str] = field(default_factory=list)
    messages: int = 0


def most_at_once(spans: Iterable[tuple[float, float]]) -> int:
    """The largest number of (start, end) intervals that overlap at one instant."""
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    now = peak = 0
    for _, step in edges:  # at equal times the end (-1) sorts first: touching intervals do not overlap
        now += step
        peak = max(peak, now)
    return peak


@dataclass
class SinkBehaviour:
    """Replies the sink gives instead of accepting.

    ``rcpt`` maps a recipient address to the reply for its RCPT; ``data`` is the
    reply to the final dot (None: accept); ``mail`` the reply to MAIL FROM;
    ``data_delay`` seconds a slow server takes before answering the final dot.
    ``hold_data``: when given, the final dot is answered only once this event is
    set (a client that goes away meanwhile gets nothing, and nothing is kept).
    ``ehlo``: the reply to EHLO and HELO instead of a greeting (e.g. a server
    that turns the client's name away with 5xx). ``pipelining``: EHLO offers
    PIPELINING (RFC 2920), as every common MTA does (aiosmtpd reads pipelined
    commands in order but does not say so itself); false for a server that does not.
    """

    rcpt: dict[str, str] = field(default_factory=dict)
    mail: str | None = None
    data: str | None = None
    data_delay: float = 0.0
    hold_data: threading.Event | None = None
    ehlo: str | None = None
    pipelining: bool = True


class _Handler:
    def __init__(self, sink: RecordingSink) -> None:
        self.sink = sink

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # noqa: ANN001
        self.sink._log_command(session, "EHLO")
        if self.sink.behaviour.ehlo:
            return [self.sink.behaviour.ehlo]
        session.host_name = hostname
        if self.sink.behaviour.pipelining:
            responses.insert(len(responses) - 1, "250-PIPELINING")
        return responses

    async def handle_HELO(self, server, session, envelope, hostname):  # noqa: ANN001
        self.sink._log_command(session, "HELO")
        if self.sink.behaviour.ehlo:
            return self.sink.behaviour.ehlo
        session.host_name = hostname
        return f"250 {server.hostname}"

    async def handle_RSET(self, server, session, envelope):  # noqa: ANN001
        self.sink._log_command(session, "RSET")
        return "250 2.0.0 OK"

    async def handle_MAIL(self, server, session, envelope, address, mail_options):  # noqa: ANN001
        self.sink._log_command(session, "MAIL")
        if self.sink.behaviour.mail:
            return self.sink.behaviour.mail
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        envelope.sink_started = time.monotonic()
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: ANN001
        self.sink._log_command(session, "RCPT")
        reply = self.sink.behaviour.rcpt.get(address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001
        self.sink._log_command(session, "DATA")
        data_started = time.monotonic()
        if self.sink.behaviour.data_delay:
            await asyncio.sleep(self.sink.behaviour.data_delay)
        hold = self.sink.behaviour.hold_data
        while hold is not None and not hold.is_set():  # cancelled with the session if the client leaves
            await asyncio.sleep(0.01)
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
            tls=_encrypted(server),
            started=getattr(envelope, "sink_started", data_started),
            data_started=data_started,
            finished=time.monotonic(),
        )
        conn: Connection | None = getattr(server, "sink_connection", None)
        with self.sink._cond:
            self.sink.messages.append(msg)
            if conn is not None:
                conn.messages += 1
            self.sink._cond.notify_all()
        return "250 2.0.0 OK queued"

    async def handle_QUIT(self, server, session, envelope):  # noqa: ANN001
        conn: Connection | None = getattr(server, "sink_connection", None)
        if conn is not None:
            with self.sink._cond:
                conn.quit = True
        return "221 2.0.0 Bye"


def _encrypted(server: SMTP) -> bool:
    """Whether the session of ``server`` runs over TLS (after STARTTLS, or implicit TLS)."""
    if server.session is not None and server.session.ssl is not None:
        return True
    transport = server.transport
    return transport is not None and transport.get_extra_info("ssl_object") is not None


class _RecordingSMTP(SMTP):
    """aiosmtpd's SMTP server that reports each connection's open and close to the sink."""

    def __init__(self, sink: RecordingSink, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sink = sink
        self.sink_connection: Connection | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        starttls = self.transport is not None  # called again on the TLS transport after STARTTLS
        super().connection_made(transport)
        if starttls:
            if self.sink_connection is not None:
                with self.sink._cond:
                    self.sink_connection.tls = True
            return
        self.sink_connection = self.sink._opened(self.session.peer if self.session else None, _encrypted(self))

    def eof_received(self) -> bool | None:
        """The client hung up: end the session here too (aiosmtpd would keep it half open until its timeout)."""
        super().eof_received()
        if self.sink_connection is not None:
            self.sink._closed(self.sink_connection)
        if self.transport is not None:
            self.transport.close()
        return False

    def connection_lost(self, error: Exception | None) -> None:
        try:
            super().connection_lost(error)
        finally:
            if self.sink_connection is not None:
                self.sink._closed(self.sink_connection)


class _SinkController(Controller):
    """The aiosmtpd controller whose servers report their connections to ``sink``."""

    def __init__(self, sink: RecordingSink, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sink = sink

    def factory(self) -> SMTP:
        return _RecordingSMTP(self.sink, self.handler, **self.SMTP_kwargs)


class RecordingSink:
    """An aiosmtpd server on ``host:port`` that records what it accepts.

    Use as a context manager. ``wait_for(n)`` blocks (bounded) until ``n``
    messages have arrived. ``auth`` maps usernames to passwords; when given, the
    sink offers AUTH (``auth_mechanisms`` restricts which) and records the login.
    ``commands`` logs ``(session number, verb)`` for EHLO, HELO, MAIL, RCPT,
    DATA and RSET in the order they arrived (sessions numbered from 1 per
    connection); ``session_commands()`` gives the verbs of each session.
    ``connections``, ``live`` and ``peak`` describe the TCP connections clients
    made (the controller's own start-up probe is not counted): when each opened
    and closed, TLS, logins, QUIT, messages; ``wait(predicate)`` blocks until
    the sink's state satisfies a condition.
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
        self.commands: list[tuple[int, str]] = []
        self._session_numbers: dict[int, tuple[object, int]] = {}
        self.connections: list[Connection] = []
        self.peak = 0
        self._recording = False
        self.behaviour = SinkBehaviour()
        self._cond = threading.Condition()
        kwargs: dict[str, Any] = dict(server_kwargs or {})
        if auth is not None or authenticator is not None:
            kwargs["authenticator"] = self._logging(authenticator or self._password_authenticator(auth or {}))
            kwargs["auth_require_tls"] = auth_require_tls
        if tls_context is not None:
            kwargs["tls_context"] = tls_context
        self.host = host
        self._requested_port = port or free_port(host)
        self.controller = _SinkController(
            self, _Handler(self), hostname=host, port=self._requested_port, server_hostname="sink.test", **kwargs
        )

    def _logging(self, authenticator: Callable[..., AuthResult]) -> Callable[..., AuthResult]:
        """``authenticator`` that also notes each successful login on its connection."""

        def authenticate(server: SMTP, session, envelope, mechanism, auth_data):  # noqa: ANN001
            result = authenticator(server, session, envelope, mechanism, auth_data)
            conn: Connection | None = getattr(server, "sink_connection", None)
            if result.success and conn is not None:
                login = result.auth_data
                if isinstance(login, LoginPassword):
                    login = login.login.decode()
                with self._cond:
                    conn.logins.append(str(login))
            return result

        return authenticate

    def _opened(self, peer: Any, tls: bool) -> Connection | None:
        if not self._recording:
            return None  # the controller's own probe while starting
        conn = Connection(peer, time.monotonic(), tls=tls)
        with self._cond:
            self.connections.append(conn)
            self.peak = max(self.peak, self.live)
            self._cond.notify_all()
        return conn

    def _closed(self, conn: Connection) -> None:
        with self._cond:
            if conn.closed is None:
                conn.closed = time.monotonic()
            self._cond.notify_all()

    @property
    def live(self) -> int:
        """Connections open now."""
        return sum(1 for c in self.connections if c.closed is None)

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
        self._recording = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    def _log_command(self, session: object, verb: str) -> None:
        with self._cond:
            known = self._session_numbers.get(id(session))
            if known is None or known[0] is not session:
                known = (session, len(self._session_numbers) + 1)
                self._session_numbers[id(session)] = known
            self.commands.append((known[1], verb))
            self._cond.notify_all()

    def session_commands(self) -> list[list[str]]:
        """The logged verbs of each session (connection), in the order the sessions began."""
        with self._cond:
            out: dict[int, list[str]] = {}
            for number, verb in self.commands:
                out.setdefault(number, []).append(verb)
            return [out[n] for n in sorted(out)]

    def wait_for_command(self, verb: str, count: int = 1, timeout: float = 20.0) -> None:
        """Wait until ``verb`` was logged ``count`` times; fail the test after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while sum(1 for _, v in self.commands if v == verb) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"sink {self.host}:{self.port} did not see {verb} x{count}: {self.commands}")
                self._cond.wait(left)

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

    def wait(self, predicate: Callable[[RecordingSink], bool], timeout: float = 20.0,
             what: str = "a condition") -> None:
        """Wait until ``predicate(self)`` holds (checked whenever a connection or message changes)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"sink {self.host}:{self.port}: timed out after {timeout}s waiting for {what}; "
                        f"connections: {self.connections}, {len(self.messages)} messages"
                    )
                self._cond.wait(min(left, 0.1))

