"""The ``metrics`` plugin: Prometheus metrics at ``http://<listen>/metrics``.

Counts come from the gateway's events (``event`` hook) and the ``accept``
hook; queue depth, oldest message age and live sessions are read from the
queue and the session table at each scrape. Metric names:

- ``mailpipe_messages_accepted_total``: messages that passed every ``accept`` check;
- ``mailpipe_recipients_total{outcome}``: delivered, deferred, bounced, expired, dropped;
- ``mailpipe_delivery_errors_total{route,outcome}``: failed attempts per route (deferred, bounced, dropped);
- ``mailpipe_delivery_latency_seconds``: arrival to delivery, per delivered recipient (histogram);
- ``mailpipe_attempt_duration_seconds``: one delivery attempt of a route (histogram);
- ``mailpipe_queue_messages``, ``mailpipe_queue_recipients{state}``, ``mailpipe_queue_oldest_age_seconds``;
- ``mailpipe_sessions{direction}``: SMTP sessions in progress, ``in`` (intake) and ``out`` (delivery);
- ``mailpipe_events_total{kind,level}``: warning and error events (logins failing, DNS failing, queue full);
- ``mailpipe_collected_messages_total{account}``: messages collected from an ISP's POP3 mailbox (they are
  counted by ``mailpipe_messages_accepted_total`` too: they pass the same ``accept`` stages);
- ``mailpipe_collect_skipped_total{account,reason}``: messages collection did not queue (``too_large``:
  left on the server; ``refused``: by an ``accept`` stage).

The ``route`` label is the route's kind and next hop for the smarthost
(``smarthost:smtp.isp.example:587``) but only ``direct`` for direct delivery,
so one label value per recipient domain cannot blow up the series count.

With several workers (``workers: N``, docs/workers.md) the page is served by worker 1 and
covers every worker: each worker's counters live in a file of prometheus_client's
multi-process mode (``PROMETHEUS_MULTIPROC_DIR``, set by the supervisor), which the page adds
up — a worker that was restarted keeps what it had counted —, the queue gauges come from
every queue file and ``mailpipe_sessions`` counts the sessions of every worker.
"""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from pydantic import Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mailpipe.core.events import Event
from mailpipe.core.hookspecs import hookimpl
from mailpipe.core.message import Message
from mailpipe.core.plugin import Plugin, PluginContext
from mailpipe.core.settings import HostPort, Strict, split_host_port
from mailpipe.core.workers.peers import WorkerSessions
from mailpipe.core.workers.slot import current
from mailpipe.plugins.asgi_server import AppServer

SKIPPED = {"collect.too_large": "too_large", "collect.refused": "refused"}
OUTCOMES = {"message.delivered": "delivered", "message.deferred": "deferred", "message.bounced": "bounced",
            "message.dropped": "dropped"}
LATENCY_BUCKETS = (1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600, 5 * 86400)
ATTEMPT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class MetricsOptions(Strict):
    """Options of ``chain: - metrics: {...}``."""

    listen: HostPort = Field("127.0.0.1:9125", description="host:port serving /metrics (no login: keep it private)")


def route_label(route: str | None) -> str:
    """``smarthost:host:port`` stays; ``direct:example.com`` becomes ``direct``; empty becomes ``none``."""
    if not route:
        return "none"
    kind = route.split(":", 1)[0]
    return route if kind == "smarthost" else kind


class MetricsPlugin(Plugin):
    """Prometheus metrics: accepted, delivered, deferred, bounced, expired; queue depth and age; latency."""

    name = "metrics"
    Options = MetricsOptions
    reload_in_place = True  # counters survive a reload

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.registry = r = CollectorRegistry()
        self.accepted = Counter("mailpipe_messages_accepted", "Messages accepted by the intake", registry=r)
        self.recipients = Counter("mailpipe_recipients", "Recipient outcomes", ["outcome"], registry=r)
        self.errors = Counter("mailpipe_delivery_errors", "Failed delivery attempts per route",
                              ["route", "outcome"], registry=r)
        self.latency = Histogram("mailpipe_delivery_latency_seconds", "From arrival to delivery, per recipient",
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.attempt = Histogram("mailpipe_attempt_duration_seconds", "One delivery attempt of a route",
                                 buckets=ATTEMPT_BUCKETS, registry=r)
        self.events = Counter("mailpipe_events", "Warning and error events", ["kind", "level"], registry=r)
        self.collected = Counter("mailpipe_collected_messages", "Messages collected from POP3 mailboxes",
                                 ["account"], registry=r)
        self.collect_skipped = Counter("mailpipe_collect_skipped", "Messages collection left or refused",
                                       ["account", "reason"], registry=r)
        # Set by the scraping process only (worker 1): with several workers the most recent value is the one.
        self.depth = Gauge("mailpipe_queue_messages", "Messages in the queue", registry=r,
                           multiprocess_mode="mostrecent")
        self.waiting = Gauge("mailpipe_queue_recipients", "Queued recipients by state", ["state"], registry=r,
                             multiprocess_mode="mostrecent")
        self.oldest = Gauge("mailpipe_queue_oldest_age_seconds", "Age of the oldest queued message", registry=r,
                            multiprocess_mode="mostrecent")
        self.sessions = Gauge("mailpipe_sessions", "SMTP sessions in progress", ["direction"], registry=r,
                              multiprocess_mode="mostrecent")
        for outcome in ("delivered", "deferred", "bounced", "expired", "dropped"):
            self.recipients.labels(outcome)
        for direction in ("in", "out"):
            self.sessions.labels(direction)
        self.server: AppServer | None = None

    @property
    def opts(self) -> MetricsOptions:
        return self.options  # type: ignore[return-value]

    @hookimpl
    def accept(self, message: Message) -> None:
        """Called by the intake for each message after the plugins before this one passed it: count it.

        Put ``metrics`` after the plugins that may refuse mail so that refused
        messages are not counted.
        """
        self.accepted.inc()

    @hookimpl
    def event(self, event: Event) -> None:
        """Called for every gateway event: count outcomes, latencies and incidents."""
        data = event.data
        outcome = OUTCOMES.get(event.kind)
        if outcome is not None:
            self.recipients.labels(outcome).inc()
            if outcome == "delivered":
                if isinstance(data.get("queued_for"), int | float):
                    self.latency.observe(max(0.0, data["queued_for"]))
            else:
                self.errors.labels(route_label(data.get("route")), outcome).inc()
        elif event.kind == "delivery.attempt":  # one per attempt of a route, whatever its recipients' outcomes
            if isinstance(data.get("duration"), int | float):
                self.attempt.observe(max(0.0, data["duration"]))
        elif event.kind == "collect.message":
            self.collected.labels(str(data.get("account", ""))).inc()
        elif event.kind in SKIPPED:
            self.collect_skipped.labels(str(data.get("account", "")), SKIPPED[event.kind]).inc()
        elif event.kind == "message.expired":
            self.recipients.labels("expired").inc(len(data.get("recipients") or []) or 1)
        if event.level in ("warning", "error"):
            self.events.labels(event.kind, event.level).inc()

    async def scrape(self, request: Request) -> Response:
        """The /metrics page: gauges refreshed from the queue and the session table, then every metric."""
        ctx = self.context
        if ctx.queue is not None:
            now = ctx.clock.now()
            st = await ctx.queue.stats(since=now, now=now)
            self.depth.set(st.queue_depth)
            self.oldest.set(max(0.0, now - st.oldest) if st.oldest else 0.0)
            for state in ("pending", "deferred", "held"):
                self.waiting.labels(state).set(st.recipients.get(state, 0))
        if ctx.control is not None:
            every = getattr(ctx.control, "worker_sessions", None)
            counts = await every.counts() if isinstance(every, WorkerSessions) else ctx.control.sessions.counts()
            for direction, n in counts.items():
                self.sessions.labels(direction).set(n)
        return Response(generate_latest(self._exported()), media_type=CONTENT_TYPE_LATEST)

    def _exported(self) -> CollectorRegistry:
        """This plugin's metrics, or with several workers every worker's (multi-process mode) added up."""
        folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if not folder or not os.path.isdir(folder):
            return self.registry
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=folder)
        return registry

    @hookimpl
    async def startup(self, context: PluginContext) -> None:
        """Called by the gateway once the queue is open: serve /metrics on ``listen`` (in worker 1 of several)."""
        if context.control is None or not current().primary:
            return
        host, port = split_host_port(self.opts.listen)
        app = Starlette(routes=[Route("/metrics", self.scrape)])
        self.server = await AppServer.claim(self, host, port, app)
        self.log.info("metrics on http://%s/metrics", self.opts.listen)

    @hookimpl
    async def shutdown(self) -> None:
        """Called when the gateway stops: stop serving /metrics."""
        if self.server is not None:
            await self.server.release(self)
