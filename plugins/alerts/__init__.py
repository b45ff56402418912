"""The ``alerts`` plugin: mail the postmaster when something needs a person, through the pipeline itself.

Rules (all optional, in ``rules:``):

- ``oldest_message: 4h`` — the oldest queued message is older than this;
- ``deferred: 100`` — more than this many recipients wait after a temporary failure;
- ``smarthost_login: true`` — the ISP's mail server refused mailpipe's login (``smarthost.login_failed``);
- ``dns: true`` — DNS lookups for direct delivery fail (``dns.failure``);
- ``queue: true`` — the queue is full or unusable (``queue.full``, ``queue.error``).

The queue rules are checked every ``check_every`` and the event rules when
the event happens. An alert is a short plain-text message from the null
sender ``<>`` (so it can never bounce) to ``to`` (default ``postmaster`` at
the gateway's ``hostname``), stored in the queue and delivered by the chain
like any other message. Each rule then stays quiet for ``cooldown``, however
often it matches. Every alert is also an ``alert.sent`` event.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid

from pydantic import Field

from mailpipe.core.dsn import human_duration
from mailpipe.core.events import Event
from mailpipe.core.hookspecs import hookimpl
from mailpipe.core.ids import new_queue_id
from mailpipe.core.message import Message, Recipient
from mailpipe.core.plugin import Plugin, PluginContext
from mailpipe.core.settings import Duration, Strict
from mailpipe.core.tasks import cancel_and_wait

log = logging.getLogger("mailpipe.plugins.alerts")
EVENT_RULES = {"smarthost.login_failed": "smarthost_login", "dns.failure": "dns", "queue.full": "queue",
               "queue.error": "queue"}
TITLES = {"smarthost_login": "the ISP's mail server refuses mailpipe's login",
          "dns": "DNS lookups are failing", "queue": "the queue is full or unusable"}


class AlertRules(Strict):
    """Which conditions send an alert."""

    oldest_message: Duration | None = Field(None, gt=0, description="oldest queued message older than this")
    deferred: int | None = Field(None, ge=0, description="more than this many deferred recipients")
    smarthost_login: bool = True
    dns: bool = True
    queue: bool = True


class AlertsOptions(Strict):
    """Options of ``chain: - alerts: {...}``."""

    to: str = Field("postmaster", description="who is told; a bare name gets @hostname")
    cooldown: Duration = Field(3600.0, gt=0, description="after an alert, the same rule stays quiet this long")
    check_every: Duration = Field(60.0, gt=0, description="how often the queue rules are checked")
    rules: AlertRules = Field(default_factory=AlertRules)


class AlertsPlugin(Plugin):
    """Alerts by mail to the postmaster: old or many deferred messages, login or DNS failing; with a cooldown."""

    name = "alerts"
    Options = AlertsOptions
    reload_in_place = True  # cooldowns survive a reload

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.last_sent: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    @property
    def opts(self) -> AlertsOptions:
        return self.options  # type: ignore[return-value]

    @property
    def recipient(self) -> str:
        to = self.opts.to
        return to if "@" in to else f"{to}@{self.context.settings.hostname}"

    @hookimpl
    async def startup(self, context: PluginContext) -> None:
        """Called once the queue is open: start checking the queue rules every ``check_every``."""
        if context.control is not None and (self.opts.rules.oldest_message or self.opts.rules.deferred is not None):
            self._task = asyncio.create_task(self._loop(), name="alerts-check")

    @hookimpl
    async def shutdown(self) -> None:
        """Called when the gateway stops: stop checking."""
        await cancel_and_wait(self._task)

    @hookimpl
    async def event(self, event: Event) -> None:
        """Called for every gateway event: an incident a rule watches sends an alert (cooldown permitting)."""
        rule = EVENT_RULES.get(event.kind)
        if rule is None or not getattr(self.opts.rules, rule):
            return
        await self.fire(rule, TITLES[rule], f"{TITLES[rule].capitalize()}.\n\nThe event ({event.kind}, "
                        f"{_when(event.time)}):\n\n    {event.text}\n")

    async def _loop(self) -> None:
        while True:
            try:
                queue, now = self.context.queue, self.context.clock.now()
                # With several nodes on one queue, one of them checks per round (the queue decides).
                if queue is not None and await queue.run_once("alerts", now, self.opts.check_every):
                    await self.check(now)
            except Exception:  # noqa: BLE001 - keep checking; the next round may work
                log.exception("alerts: checking the queue failed")
            await asyncio.sleep(self.opts.check_every)

    async def check(self, now: float | None = None) -> list[str]:
        """Evaluate the queue rules now; the rules that sent an alert."""
        queue = self.context.queue
        if queue is None:
            return []
        now = self.context.clock.now() if now is None else now
        st = await queue.stats(since=now, now=now)
        rules, sent = self.opts.rules, []
        if rules.oldest_message is not None and st.oldest and now - st.oldest > rules.oldest_message:
            age = human_duration(now - st.oldest)
            if await self.fire("oldest_message", f"a message has waited {age}",
                               f"The oldest message in the queue arrived {_when(st.oldest)} and has waited {age}, "
                               f"longer than the alert's limit of {human_duration(rules.oldest_message)}.\n\n"
                               f"Messages queued: {st.queue_depth}.\n"):
                sent.append("oldest_message")
        deferred = st.recipients.get("deferred", 0)
        if rules.deferred is not None and deferred > rules.deferred:
            if await self.fire("deferred", f"{deferred} deferred recipients",
                               f"{deferred} recipients are waiting after a temporary failure, more than the alert's "
                               f"limit of {rules.deferred}.\n\nMessages queued: {st.queue_depth}.\n"):
                sent.append("deferred")
        return sent

    async def fire(self, rule: str, title: str, body: str) -> bool:
        """Queue an alert for ``rule`` unless it sent one within ``cooldown``; True when queued."""
        ctx = self.context
        now = ctx.clock.now()
        last = self.last_sent.get(rule)
        if last is not None and now - last < self.opts.cooldown:
            return False
        if ctx.queue is None:
            return False
        self.last_sent[rule] = now
        hostname = ctx.settings.hostname
        text = (f"{body}\nGateway: {hostname}\nSee the console's Event Log or `pipeline events` for details.\n"
                f"This rule stays quiet for {human_duration(self.opts.cooldown)}.\n")
        mail = EmailMessage(policy=SMTP)
        mail["From"] = f"mailpipe alerts <MAILER-DAEMON@{hostname}>"
        mail["To"] = self.recipient
        mail["Subject"] = f"[mailpipe alert] {hostname}: {title}"
        mail["Date"] = format_datetime(datetime.fromtimestamp(now, UTC))
        mail["Message-ID"] = make_msgid(domain=hostname)
        mail["Auto-Submitted"] = "auto-generated"
        mail.set_content(text)
        data = mail.as_bytes()
        message = Message(new_queue_id(now), "", [Recipient(self.recipient)], now, size=len(data),
                          attributes={"alert": rule})
        try:
            await ctx.queue.store(message, data)
        except Exception:  # noqa: BLE001 - the event log still has it
            log.exception("alerts: could not queue the alert for %s", rule)
            return False
        ctx.emit("alert.sent", f"{message.id}: alert to <{self.recipient}>: {title}", rule=rule,
                 message=message.id)
        if ctx.control is not None:
            ctx.control.wake()
        return True


def _when(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
