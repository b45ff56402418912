"""The ``smarthost`` plugin: "send messages through ISP's mail server".

Routes every recipient it is offered (or only those of ``domains``) to the
configured servers, logs in the way the ISP wants (``auth.mode``) and delivers
over pooled connections. The pieces: ``options`` (config), ``servers``
(several servers in order), ``auth`` (SMTP AUTH and XOAUTH2 tokens), ``oauth2``
(OAuth2 tokens mailpipe fetches itself), ``pop3`` (POP-before-SMTP), ``alerts``
(events that do not repeat for every message), ``basic_auth`` (the replies of a
server that no longer takes passwords).
Sessions, their pool and the transaction are the shared outbound stack in
``plugins/outbound``.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass
from typing import Any

from mailpipe.core.errors import Reply, TemporaryError
from mailpipe.core.hookspecs import hookimpl
from mailpipe.core.message import Credentials, Message, Outcome, RecipientResult, Route
from mailpipe.core.plugin import LoginCheck, Plugin, PluginContext
from mailpipe.core.settings import Account, OAuth2Settings
from mailpipe.plugins.limits import Limiter
from mailpipe.plugins.outbound.pool import ConnectionPool, PoolKey
from mailpipe.plugins.outbound.replies import OutboundError
from mailpipe.plugins.outbound.session import ClientSettings, Login, Session
from mailpipe.plugins.outbound.tls import TlsPolicy
from mailpipe.plugins.outbound.transaction import send_pooled

from .alerts import Alerts
from .auth import LoginFailed, smtp_login
from .basic_auth import basic_auth_refused
from .oauth2 import OAuth2Logins, TokenSource, TokenUnavailable, account_label, login_label, pop3_label
from .options import AuthOptions, SmarthostOptions
from .pop3 import Pop3LoginFailed, PopLogins, pop3_login
from .servers import open_first

__all__ = ["SmarthostPlugin", "SmarthostOptions", "AuthOptions"]


@dataclass(frozen=True)
class _Blocked:
    until: float
    reply: Reply


class SmarthostPlugin(Plugin):
    """Delivers through the ISP's mail server (smarthost), with the ISP's login scheme."""

    name = "smarthost"
    Options = SmarthostOptions

    def __init__(self, options: SmarthostOptions, context: PluginContext, *, instance_name: str | None = None) -> None:
        super().__init__(options, context, instance_name=instance_name)
        opts = self.opts
        self.timeout = opts.timeout or context.settings.delivery.timeout
        self.pool = ConnectionPool(max_connections=opts.max_connections, max_messages=opts.max_messages_per_connection,
                                   idle_timeout=opts.idle_timeout, probe_timeout=min(self.timeout, 10.0))
        self.pop_logins = PopLogins(opts.auth.pop_login_window, context.clock.now)
        self.alerts = Alerts(context)
        self.oauth = OAuth2Logins(context, opts.auth, context.settings.accounts, self.alerts, self.timeout)
        self.accounts_problem = opts.accounts_problem(context.settings.accounts)
        self._blocked: dict[tuple[str, ...], _Blocked] = {}
        self._open_locks: dict[tuple[str, ...], asyncio.Lock] = {}
        # The options and the context are fixed for this instance (a reload makes a new one): the servers once.
        self._servers = tuple(opts.endpoints(context.settings.delivery.port))
        self._destination = ", ".join(f"{host}:{port}" for host, port in self._servers)
        tls = TlsPolicy("required" if opts.tls == "starttls" else opts.tls, verify=opts.verify,
                        ca_file=context.resolve_path(opts.ca_file) if opts.ca_file else None)
        self.session_settings = ClientSettings(context.settings.hostname, self.timeout, tls)
        self.limits = Limiter(opts.limits, opts.backoff, context, self.instance_name)

    @property
    def opts(self) -> SmarthostOptions:
        return self.options  # type: ignore[return-value]

    def take_over(self, old: Plugin) -> None:
        """A reload replaced ``old``: logins that were failing stay known, so the first success after
        the fix emits ``smarthost.login_ok``. With unchanged servers and login, the pause goes on and
        a failure already reported is not reported again; a changed login may fail anew and says so.
        A smarthost that asked to slow down stays slowed (``limits``)."""
        if not isinstance(old, SmarthostPlugin):
            return
        same_login = old.opts.auth == self.opts.auth and old.opts.server == self.opts.server
        self.alerts.inherit(old.alerts, quiet=same_login)
        self.oauth.take_over(old.oauth)
        self.limits.take_over(old.limits)
        if same_login:
            self._blocked.update(old._blocked)

    # -- where mail goes --------------------------------------------------------------------

    def endpoints(self) -> list[tuple[str, int]]:
        """The servers ``(host, port)`` in the order they are tried."""
        return list(self._servers)

    def destination(self) -> str:
        """The servers as ``host:port, host:port`` (the route's destination and the pool's)."""
        return self._destination

    def takes(self, recipient: str) -> bool:
        if not self.opts.domains:
            return True
        return recipient.rpartition("@")[2].lower() in self.opts.domains

    @hookimpl
    def route(self, message: Message, recipients: list[str]) -> list[Route] | None:
        """Called by the scheduler: all recipients (of ``domains``, when set) leave through the smarthost."""
        mine = [r for r in recipients if self.takes(r)]
        if not mine:
            return None
        return [Route(self.instance_name, "smarthost", self.destination(), mine, {"sender": message.sender})]

    @hookimpl
    def explain_route(self, route: Route) -> dict[str, Any] | None:
        """Called by ``pipeline route``: servers in order, TLS, and the login that would be used (no secrets)."""
        opts, auth = self.opts, self.opts.auth
        facts: dict[str, Any] = {
            "servers": [f"{host}:{port}" for host, port in self.endpoints()],
            "tls": opts.tls,
            "verify": opts.verify,
            "ca_file": str(opts.ca_file) if opts.ca_file else "system CAs",
            "auth": auth.mode,
        }
        if auth.sends_credentials:
            facts["mechanism"] = auth.mechanism
        if auth.mode == "login":
            facts["login"] = auth.username
            if auth.mechanism == "xoauth2":
                facts["token"] = (self._oauth_fact(auth.oauth2) if auth.oauth2 else
                                  "from token_command" if auth.token_command else "from config")
        elif auth.mode == "pop-before-smtp":
            account = self.context.settings.accounts[0] if self.context.settings.accounts else None
            facts["pop3_account"] = self._pop_label(account) if account else "none configured"
        elif auth.mode == "sender-account":
            sender = route.options.get("sender", "")
            account = self.context.settings.account_for(sender) if sender else None
            facts["login"] = (account.username if account
                              else f"none: no Internet Mail Account for <{sender}>, mail would stay queued")
            if account is not None and account.oauth2 is not None:
                facts["mechanism"] = "xoauth2"
                facts["token"] = self._oauth_fact(account.oauth2)
        if opts.limits:
            facts["limits"] = [f"{spec.rate} per {spec.per}" for spec in opts.limits]
        if self.accounts_problem:
            facts["problem"] = self.accounts_problem
        return facts

    @staticmethod
    def _oauth_fact(settings: OAuth2Settings) -> str:
        """How a login's OAuth2 token is had, for ``pipeline route`` (no secret)."""
        return f"OAuth2 {settings.flow} from {settings.token_url} (client {settings.client_id})"

    @staticmethod
    def _pop_label(account: Account) -> str:
        pop = account.pop3
        if pop is None:
            return f"{account.address} (no pop3 settings)"
        return f"{account.username} at {pop.server}:{pop.port or ('995' if pop.tls == 'implicit' else '110')} " \
               f"(tls: {pop.tls}{', APOP' if pop.apop else ''})"

    # -- logging in -------------------------------------------------------------------------

    @hookimpl
    async def authenticate(self, message: Message, route: Route) -> Credentials | None:
        """Called by the scheduler before ``deliver``: the login for this message's hop.

        ``login``: the configured account. ``sender-account``: the sender's
        Internet Mail Account; a sender without one fails temporarily (kept
        queued, event ``smarthost.no_account``) and is never sent under another
        login. ``pop-before-smtp``: the POP3 login to the first account is made
        here when the last one is older than ``pop_login_window``; when it fails
        the route fails temporarily and ``smarthost.pop3_login_failed`` says why.
        """
        if not self.owns(route):
            return None
        auth = self.opts.auth
        if self.accounts_problem:
            self.alerts.emit("smarthost.config", self.instance_name, f"{self.instance_name}: {self.accounts_problem}")
            raise TemporaryError(f"smarthost configuration problem: {self.accounts_problem}", 451, "4.7.0")
        if auth.mode == "none":
            return Credentials.none()
        if auth.mode == "login":
            assert auth.username is not None
            return Credentials(auth.username, auth.password, auth.mechanism, auth.token, login_label(auth))
        if auth.mode == "pop-before-smtp":
            account = self.context.settings.accounts[0]
            await self._pop_login(account)
            return Credentials.none(label=f"pop-before-smtp:{account.address}")
        account = self._sender_account(message, route)
        if account is None:
            sender = message.sender or "<>"
            text = (f"no Internet Mail Account for sender {sender}: with auth.mode sender-account the message is "
                    f"sent only under its sender's own login; add {sender} to accounts")
            self.alerts.emit("smarthost.no_account", sender.lower(), f"{message.id}: {text}; "
                             "messages from this sender stay queued", level="warning", sender=sender,
                             message=message.id)
            raise TemporaryError(text, 451, "4.7.1")
        return self._account_credentials(account)

    def _account_credentials(self, account: Account) -> Credentials:
        """The login of ``account`` in sender-account mode: XOAUTH2 with its own tokens when it has ``oauth2``."""
        mechanism = "xoauth2" if account.oauth2 is not None else self.opts.auth.mechanism
        return Credentials(account.username, account.password, mechanism, None, account_label(account))

    def _sender_account(self, message: Message, route: Route) -> Account | None:
        """The account a message is sent under in ``sender-account`` mode.

        The sender's own account; for mailpipe's own reports (null sender ``<>``),
        the account of the person they are addressed to, so a bounce reaches the
        sender it concerns under that sender's login and no one else's.
        """
        settings = self.context.settings
        if message.sender:
            return settings.account_for(message.sender)
        owners = [settings.account_for(r) for r in route.recipients]
        first = owners[0] if owners else None
        return first if first is not None and all(o is first for o in owners) else None

    async def _pop_login(self, account: Account) -> None:
        source = self.oauth.source(pop3_label(account))

        async def login() -> str:
            token = await source() if source is not None else None
            return await pop3_login(account, timeout=self.timeout, allow_plaintext=self.opts.allow_plaintext_auth,
                                    resolve=self.context.resolve_path, token=token)

        try:
            made = await self.pop_logins.ensure(account, login)
        except TokenUnavailable as exc:
            raise TemporaryError(f"POP-before-SMTP: {exc.reply.text}", 451, "4.7.0") from None
        except Pop3LoginFailed as exc:
            if source is not None and exc.refused:
                source.refused()
            self.alerts.emit("smarthost.pop3_login_failed", account.address.lower(),
                             f"POP-before-SMTP: {exc}; nothing is sent through the smarthost until it succeeds",
                             account=account.address)
            raise TemporaryError(f"POP-before-SMTP: {exc}", 451, "4.7.0") from None
        if made:
            self.alerts.clear("smarthost.pop3_login_failed", account.address.lower())
            self.context.emit("smarthost.pop3_login", f"POP-before-SMTP: logged into {self._pop_label(account)}",
                              account=account.address)

    @staticmethod
    def identity(credentials: Credentials) -> tuple[str, ...]:
        """The pool key: connections are shared only by messages sent under the same login."""
        return (credentials.label, credentials.username or "", credentials.mechanism)

    def _still_blocked(self, key: tuple[str, ...]) -> Reply | None:
        """The reply of a recent rejected login of ``key``, while ``login_failure_pause`` lasts."""
        blocked = self._blocked.get(key)
        if blocked is None:
            return None
        if self.context.clock.now() < blocked.until:
            return blocked.reply
        del self._blocked[key]
        return None

    async def _open_for(self, key: tuple[str, ...], credentials: Credentials) -> Session:
        """A new connection; logins of one identity are made one at a time, so a wrong password
        found by the first of a burst of messages is not tried again by the others."""
        if not credentials.needs_auth:
            return await self._open(credentials)
        async with self._open_locks.setdefault(key, asyncio.Lock()):
            reply = self._still_blocked(key)
            if reply is not None:
                raise LoginFailed(reply, rejected=True, repeated=True)
            return await self._open(credentials)

    async def _open(self, credentials: Credentials) -> Session:
        login: Login | None = None
        source: TokenSource | None = None
        if credentials.needs_auth:
            token_command = self.opts.auth.token_command if credentials.label.startswith("login:") else None
            source = self.oauth.source(credentials.label)
            login = functools.partial(smtp_login, credentials=credentials, token_command=token_command,
                                      token_source=source, allow_plaintext=self.opts.allow_plaintext_auth,
                                      timeout=self.timeout)
        try:
            return await open_first(self.endpoints(), self.session_settings, login=login)
        except LoginFailed as exc:
            # A refused OAuth2 token (expired early, revoked): forget it and log in once more with a fresh one.
            if source is None or not exc.rejected or not source.refused():
                raise
        return await open_first(self.endpoints(), self.session_settings, login=login)

    def _login_failed(self, credentials: Credentials, key: tuple[str, ...], exc: LoginFailed) -> Reply:
        auth = self.opts.auth
        reply = exc.reply
        if exc.repeated or isinstance(exc, TokenUnavailable):
            return reply
        self._basic_auth_refused(credentials, reply)
        if exc.rejected:
            self._blocked[key] = _Blocked(self.context.clock.now() + auth.login_failure_pause, reply)
        pause = (f"; the same login is not tried again for {auth.login_failure_pause:.0f}s"
                 if exc.rejected else "")
        why = (f"This is a configuration problem (auth settings of {self.instance_name}), not the message's: "
               if exc.rejected else "")
        self.alerts.emit("smarthost.login_failed", credentials.label, f"{reply.text}. {why}mail stays queued{pause}",
                         login=credentials.username, mode=self.opts.auth.mode)
        return reply

    # -- sending ----------------------------------------------------------------------------

    @hookimpl
    async def deliver(self, message: Message, route: Route, credentials: Credentials) -> list[RecipientResult] | None:
        """Called by the scheduler: one SMTP transaction on a pooled connection for this login.

        Returns one result per recipient. Failures to reach or log into the
        smarthost are temporary for every recipient (the mail stays queued);
        replies to MAIL, RCPT and DATA are passed on as the server gave them,
        except 530 "authentication required", which is a configuration problem
        and therefore temporary. Recipients over a sending limit (``limits``), or
        held back while the smarthost asked to slow down (``backoff``), are
        deferred until their next slot without a transaction (``plugins/limits``).
        """
        label = f"smarthost:{route.destination}"
        identity = self.identity(credentials)
        blocked = self._still_blocked(identity)
        if blocked is not None:
            return RecipientResult.for_all(route.recipients, blocked, route=label)
        async with self.limits.admit(message, route.recipients, destination=self.destination(),
                                     account=self._account(credentials), route=label) as admitted:
            if admitted.recipients:
                admitted.sent = await self._send(message, admitted.recipients, credentials, identity, label)
        return admitted.results

    def _account(self, credentials: Credentials) -> str:
        """The login the ISP counts mail under (``per: account`` limits): the user name, else the smarthost."""
        if credentials.username:
            return credentials.username
        _, _, address = credentials.label.partition(":")
        return address or self.destination()

    async def _send(self, message: Message, recipients: list[str], credentials: Credentials,
                    identity: tuple[str, ...], label: str) -> list[RecipientResult]:
        """One transaction for ``recipients`` on a pooled connection under ``credentials``."""
        key = PoolKey(self.destination(), 0, self.session_settings.tls, identity)

        def opened(_session: object) -> None:
            if credentials.needs_auth and self.alerts.clear("smarthost.login_failed", credentials.label):
                self.context.emit("smarthost.login_ok", f"smarthost login as {credentials.username} works again",
                                  login=credentials.username)

        try:
            _, results = await send_pooled(self.pool, key, functools.partial(self._open_for, identity, credentials),
                                           message, recipients, await message.body(), route=label, opened=opened)
        except LoginFailed as exc:
            reply = self._login_failed(credentials, identity, exc)
            return RecipientResult.for_all(recipients, reply, route=label)
        except OutboundError as exc:
            return RecipientResult.for_all(recipients, exc.reply, remote_host=exc.host, route=label)
        return [self._auth_required(r, credentials) for r in results]

    def _basic_auth_refused(self, credentials: Credentials, reply: Reply) -> bool:
        """A ``550 5.7.30``-style reply (the server takes no passwords any more): tell the admin to switch to OAuth2."""
        if credentials.mechanism == "xoauth2" or not basic_auth_refused(reply):
            return False
        self.alerts.emit(
            "smarthost.basic_auth_disabled", credentials.label,
            f"the smarthost no longer accepts password logins ({reply.text}): switch {credentials.label} to OAuth2 "
            "(auth.mechanism: xoauth2 with auth.oauth2, or oauth2 on the account; see docs/smarthost.md); "
            "mail stays queued", login=credentials.username, mode=self.opts.auth.mode)
        return True

    def _auth_required(self, result: RecipientResult, credentials: Credentials) -> RecipientResult:
        """530 (authentication required) means the auth settings do not fit the ISP: temporary, with an event.

        So does a ``5.7.30``-style refusal of password logins (event ``smarthost.basic_auth_disabled``).
        """
        if basic_auth_refused(result.reply) and credentials.mechanism != "xoauth2":
            self._basic_auth_refused(credentials, result.reply)
            result.reply = Reply(451, "4.7.0", f"smarthost refuses password logins: {result.reply}")
            result.outcome = Outcome.TEMPORARY
            return result
        if result.reply.code != 530:
            return result
        self.alerts.emit(
            "smarthost.auth_required", credentials.label,
            f"the smarthost requires authentication ({result.reply}) but auth.mode is {self.opts.auth.mode}"
            f"{' and the login was accepted' if credentials.needs_auth else ''}; mail stays queued",
            mode=self.opts.auth.mode)
        reply = Reply(451, "4.7.0", f"smarthost requires authentication: {result.reply}")
        result.reply, result.outcome = reply, Outcome.TEMPORARY
        return result

    # -- checks without mail ------------------------------------------------------------------

    def config_warnings(self) -> list[str]:
        """Called by ``pipeline check``: OAuth2 files (refresh token, client certificate, CA) unreadable or exposed."""
        return self.oauth.warnings()

    async def test_logins(self) -> list[LoginCheck]:
        """Called by ``pipeline auth test``: each login this entry makes, made once (token, connect, AUTH, QUIT).

        Nothing is sent and nothing queued; texts name logins, endpoints and servers, never a secret or token.
        """
        if self.accounts_problem:
            return [LoginCheck(self.instance_name, False, [self.accounts_problem])]
        auth, accounts = self.opts.auth, self.context.settings.accounts
        if auth.mode == "none":
            return [await self._test_login(Credentials.none())]
        if auth.mode == "login":
            assert auth.username is not None
            return [await self._test_login(Credentials(auth.username, auth.password, auth.mechanism, auth.token,
                                                       login_label(auth)))]
        if auth.mode == "pop-before-smtp":
            account = accounts[0]
            steps = []
            source = self.oauth.source(pop3_label(account))
            try:
                token = await source() if source is not None else None
                if source is not None:
                    steps.append(f"token: {self._token_text(source)}")
                steps.append(await pop3_login(account, timeout=self.timeout, resolve=self.context.resolve_path,
                                              allow_plaintext=self.opts.allow_plaintext_auth, token=token))
            except (TokenUnavailable, Pop3LoginFailed) as exc:
                text = exc.reply.text if isinstance(exc, TokenUnavailable) else str(exc)
                return [LoginCheck(pop3_label(account), False, [*steps, text])]
            check = await self._test_login(Credentials.none(label=f"pop-before-smtp:{account.address}"))
            return [LoginCheck(check.login, check.ok, steps + check.steps)]
        return [await self._test_login(self._account_credentials(a)) for a in accounts]

    @staticmethod
    def _token_text(source: TokenSource) -> str:
        provider = source.provider
        token = provider.cached()
        life = f", valid for {token.lifetime:.0f}s" if token is not None else ""
        return f"OAuth2 access token from {provider.endpoint} ({provider.settings.flow}){life}"

    async def _test_login(self, credentials: Credentials) -> LoginCheck:
        steps: list[str] = []
        source = self.oauth.source(credentials.label)
        if source is not None:
            try:
                await source()
            except TokenUnavailable as exc:
                return LoginCheck(credentials.label, False, [exc.reply.text])
            steps.append(f"token: {self._token_text(source)}")
        try:
            session = await self._open(credentials)
        except OutboundError as exc:
            return LoginCheck(credentials.label, False, [*steps, str(exc.reply)])
        login = (f"logged in as {credentials.username} with {session.mechanism.upper()}" if session.mechanism
                 else "no login")
        steps.append(f"connected to {session.peer} ({'TLS' if session.tls else 'no TLS'}, {login}); nothing sent")
        await session.quit()
        return LoginCheck(credentials.label, True, steps)

    @hookimpl
    async def shutdown(self) -> None:
        """Called by the gateway when it stops: QUIT every pooled connection."""
        await self.pool.close()
