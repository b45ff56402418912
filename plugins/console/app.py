"""The console's Starlette application: login, Queues, Message Log, Event Log, Sessions, Statistics,
Outgoing Mail, Internet Mail Accounts. Server-rendered Jinja2 pages; one small static script refreshes the live parts.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from mailpipe.core.dsn import human_duration
from mailpipe.core.durations import format_duration, parse_duration
from mailpipe.core.errors import required
from mailpipe.core.plugin import Control, Plugin
from mailpipe.core.queue import QueueBackend, SharedCounters
from mailpipe.core.queueactions import ACTIONS, Done, perform
from mailpipe.core.workers.peers import WorkerSessions

from . import charts
from .messagepage import actions_for, client_facts
from .options import ConsoleOptions
from .outgoing import FIELDS, ConfigEditor, SaveError, form_values, plugin_options
from .security import LoginThrottle, LoginTokens, SessionStore, csrf_ok, verify_password
from .yamlfile import digest

HERE = Path(__file__).parent
COOKIE = "mailpipe_console"
LOGIN_COOKIE = "mailpipe_login"  # the login form's double-submit token (no server-side state before login)
STATES = ["pending", "deferred", "held"]
OUTCOMES = ["delivered", "deferred", "bounced", "expired", "dropped", "temporary", "permanent"]
LEVELS = ["debug", "info", "warning", "error"]
SERIES = ["delivered", "deferred", "bounced", "expired"]
HELD_FLAGS = 200  # held messages of a Queues page whose hold reason is looked up
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
Handler = Callable[[Request], Awaitable[Response]]


def ts(t: float | None) -> str:
    """Unix time as the console shows it (UTC)."""
    if not t:
        return "-"
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")


class Console:
    """The web console of one console plugin instance."""

    def __init__(self, plugin: Plugin) -> None:
        self.plugin = plugin
        self.options: ConsoleOptions = plugin.options  # type: ignore[assignment]
        self.store = SessionStore(self.options.session_timeout)
        self.throttle = LoginThrottle(self.options.login_attempts, self.options.login_pause)
        self.login_tokens = LoginTokens(self.options.session_timeout)
        self.users = {u.username: u.password_hash for u in self.options.users}
        self.samples: deque[tuple[float, int, float]] = deque(maxlen=24 * 60)
        self.env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]))
        self.env.filters["ts"] = ts
        self.env.filters["ago"] = lambda t: human_duration(max(0.0, self.now() - t)) if t else "-"
        self.env.filters["duration"] = format_duration
        self.app = Starlette(routes=self.routes())

    # -- plumbing ------------------------------------------------------------------------

    @property
    def control(self) -> Control:
        """The gateway's controls (RuntimeError outside ``pipeline serve``)."""
        return required(self.plugin.context.control, "the console runs only inside `pipeline serve`")

    @property
    def queue(self) -> QueueBackend:
        """The open queue (RuntimeError when it is not open)."""
        return required(self.plugin.context.queue, "the console runs only with the queue open")

    def now(self) -> float:
        return self.plugin.context.clock.now()

    def editor(self) -> ConfigEditor | None:
        source = Path(self.control.config_source)
        return ConfigEditor(source, lambda _path: self.control.reload()) if source.is_file() else None

    def secure(self, request: Request) -> bool:
        if self.options.secure_cookies == "auto":
            return request.url.scheme == "https"
        return bool(self.options.secure_cookies)

    def render(self, request: Request, template: str, session: Any = None, status: int = 200,
               **ctx: Any) -> HTMLResponse:
        flash = session.flash if session is not None else None
        if session is not None:
            session.flash = None
        csrf = ctx.pop("csrf", getattr(session, "csrf", ""))  # the login form brings its own token
        html = self.env.get_template(template).render(
            request=request, session=session, user=getattr(session, "user", None), flash=flash,
            csrf=csrf, hostname=self.plugin.context.settings.hostname,
            path=request.url.path, **ctx,
        )
        response = HTMLResponse(html, status_code=status, headers=HEADERS)
        if session is not None:
            self.set_cookie(request, response, session.id)
        return response

    def set_cookie(self, request: Request, response: Response, sid: str) -> None:
        response.set_cookie(COOKIE, sid, httponly=True, samesite="strict", secure=self.secure(request), path="/",
                            max_age=int(self.options.session_timeout))

    def redirect(self, url: str) -> RedirectResponse:
        return RedirectResponse(url, status_code=303, headers=HEADERS)

    def page(self, handler: Callable[[Request, Any], Awaitable[Response]], post: bool = False) -> Handler:
        """Wrap a handler: a login is needed; a POST must carry the session's CSRF token."""

        async def wrapped(request: Request) -> Response:
            session = self.store.get(request.cookies.get(COOKIE))
            if session is None:
                if request.method == "GET" and not request.url.path.endswith("/live"):
                    return self.redirect("/login")
                return Response("login needed", status_code=401, headers=HEADERS)
            if post:
                form = await request.form()
                if not csrf_ok(session, form.get("csrf")):
                    return Response("invalid or missing CSRF token", status_code=403, headers=HEADERS)
            return await handler(request, session)

        return wrapped

    def routes(self) -> list[Route | Mount]:
        p = self.page
        return [
            Route("/", p(self.home)),
            Route("/login", self.login_form, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", p(self.logout, post=True), methods=["POST"]),
            Route("/queues", p(self.queues)),
            Route("/queues/retry-all", p(self.retry_all, post=True), methods=["POST"]),
            Route("/queues/{message_id}", p(self.message)),
            Route("/queues/{message_id}/{action}", p(self.message_action, post=True), methods=["POST"]),
            Route("/log", p(self.message_log)),
            Route("/events", p(self.event_log)),
            Route("/sessions", p(self.sessions)),
            Route("/sessions/live", p(self.sessions_live)),
            Route("/stats", p(self.stats)),
            Route("/outgoing", p(self.outgoing)),
            Route("/outgoing/save", p(self.outgoing_save, post=True), methods=["POST"]),
            Route("/outgoing/undo", p(self.outgoing_undo, post=True), methods=["POST"]),
            Route("/accounts", p(self.accounts)),
            Route("/accounts/collect", p(self.collect_now, post=True), methods=["POST"]),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ]

    # -- login -------------------------------------------------------------------------------

    async def home(self, request: Request, session: Any) -> Response:
        return self.redirect("/queues")

    def login_page(self, request: Request, *, status: int = 200, **ctx: Any) -> Response:
        """The login form with a fresh signed token, in the form and in its cookie; nothing is stored."""
        token = self.login_tokens.issue()
        response = self.render(request, "login.html", None, status=status, csrf=token, **ctx)
        response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", secure=self.secure(request),
                            path="/login", max_age=int(self.options.session_timeout))
        return response

    async def login_form(self, request: Request) -> Response:
        if self.store.get(request.cookies.get(COOKIE)) is not None:
            return self.redirect("/queues")
        return self.login_page(request)

    async def login(self, request: Request) -> Response:
        form = await request.form()
        if not self.login_tokens.valid(request.cookies.get(LOGIN_COOKIE), form.get("csrf")):
            return self.login_page(request, status=403, error="The login form expired; please try again.")
        username, password = str(form.get("username", "")), str(form.get("password", ""))
        client = request.client.host if request.client else "?"
        if self.throttle.blocked(client):
            self.plugin.log.warning("console login refused from %s: too many failures; user %r", client, username)
            return self.login_page(request, status=429, error="Too many failed logins; try again later.")
        if delay := self.throttle.slowdown(username):
            await asyncio.sleep(delay)  # failures for this name from anywhere slow it down, never lock it
        if not await verify_password(self.users.get(username), password):
            self.throttle.failed(client, username)
            self.plugin.log.warning("console login failed from %s: user %r", client, username)
            return self.login_page(request, status=401, error="Wrong user name or password.", username=username)
        self.throttle.succeeded(client, username)
        previous = self.store.get(request.cookies.get(COOKIE))
        if previous is not None:
            self.store.drop(previous.id)
        fresh = self.store.new(username)
        self.plugin.log.info("console login: %s from %s", username, client)
        response = self.redirect("/queues")
        self.set_cookie(request, response, fresh.id)
        response.delete_cookie(LOGIN_COOKIE, path="/login")
        return response

    async def logout(self, request: Request, session: Any) -> Response:
        self.store.drop(session.id)
        response = self.redirect("/login")
        response.delete_cookie(COOKIE, path="/")
        return response

    # -- queues ------------------------------------------------------------------------------

    async def queues(self, request: Request, session: Any) -> Response:
        state = request.query_params.get("state") or None
        state = state if state in STATES else None
        q = (request.query_params.get("q") or "").strip().lower()
        rows = await self.queue.list(state=state, limit=1000)
        if q:
            kept = []
            for row in rows:
                hay = f"{row.id} {row.sender}".lower()
                if q not in hay:
                    detail = await self.queue.get(row.id)
                    hay += " ".join(r.address.lower() for r in detail.message.recipients) if detail else ""
                if q in hay:
                    kept.append(row)
            rows = kept
        return self.render(request, "queues.html", session, rows=rows, state=state or "", q=q, states=STATES,
                           flags=await self._hold_flags(rows))

    async def _hold_flags(self, rows: list[Any]) -> dict[str, str]:
        """Queue ID -> why it is held ("quarantined: virus ..."), for held messages held at intake."""
        flags: dict[str, str] = {}
        for row in [r for r in rows if r.recipients.get("held")][:HELD_FLAGS]:
            detail = await self.queue.get(row.id)
            reason = detail.message.held if detail is not None else None
            if reason:
                flags[row.id] = reason
        return flags

    async def message(self, request: Request, session: Any) -> Response:
        detail = await self.queue.get(request.path_params["message_id"])
        if detail is None:
            return self.render(request, "notfound.html", session, status=404,
                               what=f"message {request.path_params['message_id']}")
        return self.render(request, "message.html", session, d=detail, m=detail.message,
                           client=client_facts(detail.client), actions=actions_for(detail.message))

    async def _perform(self, session: Any, action: str, ids: list[str] | None) -> Done:
        """An administration action by the logged-in user (``console.<action>`` events); wakes delivery."""
        done = await perform(self.queue, self.plugin.context.events, action, ids, now=self.now(), via="console",
                             user=session.user, who=f"console user {session.user}")
        if action in ("retry", "release") and done.acted:
            self.control.wake(force=True)
        return done

    async def message_action(self, request: Request, session: Any) -> Response:
        mid, action = request.path_params["message_id"], request.path_params["action"]
        if action not in ACTIONS:
            return Response("unknown action", status_code=404, headers=HEADERS)
        done = await self._perform(session, action, [mid])
        if done.unknown:
            return self.render(request, "notfound.html", session, status=404, what=f"message {mid}")
        if not done.acted:
            session.flash = f"{action}: {mid}: nothing to {action}"
            return self.redirect(f"/queues/{mid}")
        session.flash = f"{action}: {mid}: {done.count} recipient(s)" if action != "delete" else f"deleted {mid}"
        return self.redirect("/queues" if action == "delete" else f"/queues/{mid}")

    async def retry_all(self, request: Request, session: Any) -> Response:
        done = await self._perform(session, "retry", None)
        session.flash = f"retry now: {done.count} recipient(s) due"
        return self.redirect("/queues")

    # -- logs --------------------------------------------------------------------------------

    def _since(self, text: str) -> float | None:
        if not text:
            return None
        try:
            return self.now() - parse_duration(text)
        except ValueError:
            pass
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            return None
        return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()

    async def message_log(self, request: Request, session: Any) -> Response:
        qp = request.query_params
        f = {k: (qp.get(k) or "").strip() for k in ("sender", "recipient", "since", "until", "outcome", "message")}
        since, until = self._since(f["since"]), self._since(f["until"])
        rows = await self.queue.attempts(
            limit=500, sender=f["sender"] or None, recipient=f["recipient"] or None, since=since,
            outcome=f["outcome"] if f["outcome"] in OUTCOMES else None, message=f["message"] or None,
        )
        if until is not None:
            rows = [a for a in rows if a.time <= until]
        bad = [k for k in ("since", "until") if f[k] and self._since(f[k]) is None]
        return self.render(request, "log.html", session, rows=list(reversed(rows)), f=f, outcomes=OUTCOMES,
                           bad=bad)

    async def event_log(self, request: Request, session: Any) -> Response:
        kind = (request.query_params.get("kind") or "").strip()
        level = request.query_params.get("level") or ""
        since = self._since(request.query_params.get("since") or "")
        events = await self.queue.events(since=since, limit=500, kind=kind or None,
                                            level=level if level in LEVELS else None)
        return self.render(request, "events.html", session, events=list(reversed(events)), kind=kind,
                           level=level, levels=LEVELS, since=request.query_params.get("since") or "")

    # -- sessions ----------------------------------------------------------------------------

    async def live_sessions(self) -> dict[str, list[dict[str, Any]]]:
        """The live sessions of every worker (of this process when it is the only one)."""
        every = getattr(self.control, "worker_sessions", None)
        return await every.snapshot() if isinstance(every, WorkerSessions) else self.control.sessions.snapshot()

    async def sessions(self, request: Request, session: Any) -> Response:
        return self.render(request, "sessions.html", session, live=await self.live_sessions(),
                           refresh_ms=int(self.options.refresh * 1000))

    async def sessions_live(self, request: Request, session: Any) -> Response:
        html = self.env.get_template("_sessions.html").render(live=await self.live_sessions())
        return HTMLResponse(html, headers=HEADERS)

    # -- statistics --------------------------------------------------------------------------

    async def sample(self) -> None:
        """Remember the queue depth and the oldest message's age now (for the depth chart)."""
        now = self.now()
        st = await self.queue.stats(since=now, now=now)
        self.samples.append((now, st.queue_depth, (now - st.oldest) if st.oldest else 0.0))

    async def stats(self, request: Request, session: Any) -> Response:
        now = self.now()
        await self.sample()
        hour = 3600.0
        start = (now // hour - 23) * hour
        labels: list[str] = []
        series: dict[str, list[int]] = {name: [] for name in SERIES}
        for i in range(24):
            since = start + i * hour
            st = await self.queue.stats(since=since, now=min(now, since + hour - 0.001))
            labels.append(datetime.fromtimestamp(since, UTC).strftime("%H:00"))
            for name in SERIES:
                series[name].append(int(st.outcomes.get(name, 0)))
        day = await self.queue.stats(since=now - 24 * hour, now=now)
        limits = await self.queue.usage(now) if isinstance(self.queue, SharedCounters) else None
        samples = list(self.samples)[-120:]
        depth = [(datetime.fromtimestamp(t, UTC).strftime("%H:%M"), float(d)) for t, d, _ in samples]
        age = [(datetime.fromtimestamp(t, UTC).strftime("%H:%M"), a / 60) for t, _, a in samples]
        return self.render(
            request, "stats.html", session, day=day, now=now,
            per_hour=charts.bars("Recipients per hour (UTC), last 24 hours", labels, series),
            depth=charts.line("Queue depth (messages)", depth, name="depth"),
            age=charts.line("Oldest message (minutes)", age, name="age", unit="m"),
            totals={name: sum(values) for name, values in series.items()}, limits=limits,
        )

    # -- outgoing mail -----------------------------------------------------------------------

    async def outgoing(self, request: Request, session: Any, errors: dict[str, str] | None = None,
                       values: dict[str, str] | None = None, status: int = 200) -> Response:
        editor = self.editor()
        if editor is None:
            return self.render(request, "notfound.html", session, status=404,
                               what="a configuration file (this server runs the embedded default)")
        text, rt = editor.read()
        shown = values or form_values(rt.doc)
        shown["password"] = ""
        has_password = bool((plugin_options(rt.doc, "smarthost").get("auth") or {}).get("password"))
        return self.render(request, "outgoing.html", session, status=status, fields=FIELDS, values=shown,
                           errors=errors or {}, version=digest(text), source=editor.path,
                           can_undo=bool(editor.undo_stack), has_password=has_password)

    async def outgoing_save(self, request: Request, session: Any) -> Response:
        editor = self.editor()
        if editor is None:
            return self.redirect("/outgoing")
        form = dict(await request.form())
        try:
            changed = await editor.save(form)
        except SaveError as exc:
            values = {k: str(v) for k, v in form.items() if k not in ("csrf", "version", "password")}
            for f in FIELDS:
                if f.kind == "checkbox":
                    values[f.name] = "true" if form.get(f.name) in ("on", "true", "1") else "false"
            return await self.outgoing(request, session, errors=exc.errors, values=values, status=422)
        who = session.user
        if changed:
            self.plugin.log.info("console: %s saved Outgoing Mail (%s)", who, ", ".join(changed))
            self.plugin.context.emit("console.saved", f"Outgoing Mail saved by {who}: {', '.join(changed)}",
                                user=who, fields=changed)
            session.flash = f"Saved and applied: {', '.join(changed)}."
        else:
            session.flash = "Nothing changed."
        return self.redirect("/outgoing")

    async def outgoing_undo(self, request: Request, session: Any) -> Response:
        editor = self.editor()
        if editor is None:
            return self.redirect("/outgoing")
        try:
            done = await editor.undo()
        except SaveError as exc:
            session.flash = "Undo failed: " + "; ".join(exc.errors.values())
            return self.redirect("/outgoing")
        if done:
            self.plugin.context.emit("console.undo", f"Outgoing Mail: last save undone by {session.user}",
                                user=session.user)
        session.flash = "Undone: the previously saved settings are back in effect." if done else "Nothing to undo."
        return self.redirect("/outgoing")


    # -- internet mail accounts --------------------------------------------------------------

    async def accounts(self, request: Request, session: Any) -> Response:
        """Each collecting account (last collection, counts, problem, next run) and the recent ``collect.`` events."""
        events = await self.queue.events(limit=50, kind="collect")
        return self.render(request, "accounts.html", session, accounts=self.control.collections(),
                           events=list(reversed(events)))

    async def collect_now(self, request: Request, session: Any) -> Response:
        """"Collect now": one account (form field ``account``) or all of them, started at once."""
        form = await request.form()
        account = str(form.get("account") or "") or None
        n = self.control.collect_now(account)
        self.plugin.log.info("console: collect now (%s) by %s", account or "all accounts", session.user)
        session.flash = f"Collecting {account or 'every account'} now." if n else f"No account {account} collects mail."
        return self.redirect("/accounts")
