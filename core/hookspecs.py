"""The hooks a mailpipe plugin may implement.

Who calls what
--------------
The pipeline does **not** call these through pluggy's ``pm.hook.NAME(...)``.
It walks the implementations itself, in chain order (the order of ``chain:`` in
the YAML), and awaits each result when it is awaitable (see ``chain.Chain``).
So an implementation may be a plain ``def`` or an ``async def``; returning
``None`` (or an awaitable that resolves to ``None``) always means "not mine,
ask the next plugin". Every call has a time bound; an exception other than
``SMTPError``, or running past the bound, is a *temporary* failure logged with
the plugin's name, never a lost message.

"First answer wins" hooks stop at the first plugin that returns something
other than ``None``. ``accept``, ``explain_accept``, ``startup``, ``shutdown`` and
``event`` are called on every plugin. ``route`` is walked *per recipient* (``Chain.route``):
each plugin sees only the recipients no earlier plugin took. ``deliver`` and
``explain_route`` are called only on the plugin that made the route (the chain
entry named by ``route.plugin``), so they need not check whose route it is.

An implementation may take any subset of the arguments, by name, e.g.
``def deliver(self, route)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from .errors import Reply
    from .events import Event
    from .message import Credentials, Decision, Message, RecipientResult, Route, RouteVia, SessionInfo
    from .plugin import PluginContext
    from .queue import QueueBackend

PROJECT = "mailpipe"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def accept(message: Message, session: SessionInfo) -> Reply | None:
    """Inspect a message before it is queued; called on every plugin, in chain order.

    Called by the SMTP intake after the client's final dot and before the
    message is committed to the queue. ``message`` holds the whole body in
    memory; ``message.add_header(name, value)`` adds a header. To refuse,
    raise ``SMTPError`` (or return a ``Reply`` with a 4xx/5xx code): the client
    gets that reply and nothing is queued. Return ``None`` to let it pass.
    Relay policy, size policy, virus scanning and rules live here.
    """


@hookspec
def route(message: Message, recipients: list[str]) -> list[Route | RouteVia] | None:
    """Say how recipients leave; first answer wins, *per recipient* (walked by ``Chain.route``).

    Called by the delivery (``core/delivery.py``) for each due message with the
    recipients still to be delivered. Return a list of ``Route`` objects covering the
    recipients this plugin takes (it may take only some, e.g. only certain
    domains), or ``None`` for "none of mine". Recipients not taken are offered
    to the next plugin in the chain. Recipients no plugin takes fail
    temporarily with "no route" and an event. A ``RouteVia`` hands recipients to
    the chain entry it names (e.g. a rule's ``route_via: smarthost-big``): only
    that entry's ``route`` is asked for them.
    """


@hookspec(firstresult=True)
def authenticate(message: Message, route: Route) -> Credentials | None:
    """Give the credentials for one hop; first answer wins.

    Called by the delivery before ``deliver`` for each route, in chain order
    (a plugin that only answers for its own routes checks ``self.owns(route)``). Return
    ``Credentials`` (``Credentials.none()`` to send without SMTP AUTH, after any
    pre-login step such as POP-before-SMTP has been done here), or ``None``
    for "not mine". When no plugin answers, the hop is sent without AUTH.
    Raise ``SMTPError`` when the login cannot be had (e.g. the POP3 login
    failed): every recipient of the route gets that outcome.
    """


@hookspec
def before_send(message: Message, data: bytes) -> bytes | None:
    """Change the bytes of a message just before they leave; called on every plugin, in chain order.

    Called by the delivery once per attempt, after ``route`` and before the first ``deliver``,
    only when the attempt has routes; each plugin gets the bytes the previous one returned.
    Return new bytes (e.g. with a ``DKIM-Signature`` header prepended) or ``None`` to leave
    them. The result is what every route of this attempt sends (and what a delivery report
    quotes); the queue keeps the bytes it stored, so the next attempt starts from those again.
    Mailpipe's own reports (bounces, alerts) pass here too, although they never pass ``accept``.
    Raise ``SMTPError`` (4xx) to keep the message waiting: every routed recipient gets that reply.
    """


@hookspec
def deliver(message: Message, route: Route, credentials: Credentials) -> list[RecipientResult] | None:
    """Carry out the SMTP transaction for a route; called only on the plugin that made the route.

    Called by the delivery with the route from ``route`` and the credentials
    from ``authenticate``, on the chain entry named by ``route.plugin``. Return
    one ``RecipientResult`` per recipient of the route: delivered (a 250 after
    the final dot), temporary or permanent failure, each with the remote host,
    reply code, enhanced status code and text. A recipient missing from the
    result (or a ``None`` result) is treated as a temporary failure.
    """


@hookspec(firstresult=True)
def on_failure(message: Message, result: RecipientResult) -> Decision | None:
    """Decide what happens to a recipient whose attempt failed; first answer wins.

    Called by the recorder (``core/recording.py``) once per failed recipient after each attempt.
    Return ``Decision.retry(at)`` to try again at Unix time ``at`` (with
    ``warn=True`` the sender also gets one "delayed mail" notice),
    ``Decision.bounce(...)`` to end it as failed or expired (the sender is
    told unless ``notify=False``), or ``Decision.drop()`` to end it silently.
    When no plugin answers, temporary failures are retried after
    ``delivery.default_retry`` (15 minutes) and permanent failures bounce.
    """


@hookspec(firstresult=True)
def open_queue(context: PluginContext) -> QueueBackend | None:
    """Return the queue backend; called once at start on the plugin named in ``queue:``."""


@hookspec
def startup(context: PluginContext) -> None:
    """Called on every plugin once the queue is open, before mail is accepted (and on the new
    instances of a reload); raising refuses the start (or the reload)."""


@hookspec
def shutdown() -> None:
    """Called on every plugin when the gateway stops, after deliveries finished."""


@hookspec
def event(event: Event) -> None:
    """Observe a gateway event (state change, failure, start, stop); called on every plugin.

    For logs, metrics and alerts. Must be quick and must not raise; it is called
    synchronously from the event emitter (async implementations are scheduled).
    """


@hookspec
def explain_route(route: Route) -> dict[str, Any] | None:
    """Describe, without sending anything, how ``route`` would be delivered.

    Called by ``pipeline route ADDRESS`` (the dry run) only on the plugin that
    made the route; return a dict of printable facts (e.g. MX hosts in the order
    they would be tried, their addresses, the credentials mode).
    """


@hookspec
def explain_accept(message: Message, session: SessionInfo) -> dict[str, Any] | None:
    """Describe, without side effects, what ``accept`` would do with ``message``; called on every plugin.

    Called by ``pipeline rules test`` (the dry run of the policy stages) in chain order, on
    a message read from a file; nothing is sent, scanned, stored or counted. Return a dict
    of printable facts (e.g. which rules match and what they would do), or ``None``.
    """
