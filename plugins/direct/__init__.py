"""The ``direct`` plugin: "send messages direct" to each recipient domain's MX hosts (DNS).

Modules, by concern:

* ``options``  - the YAML options and their defaults;
* ``mx``       - MX lookup through the configured DNS servers, ordering, implicit MX, loop check;
* ``dnsfail``  - which DNS failures are permanent and which temporary, and their replies;
* ``hosts``    - address order per host and a happy-eyeballs connect (IPv6/IPv4);
* ``limits``   - per-domain and total concurrency limits;
* ``attempt``  - one attempt for one domain: walk the MX hosts until one takes the mail.

Transport security (DANE, MTA-STS, TLS reporting; docs/direct.md):

* ``security`` - which policy each MX host gets, and why;
* ``dane``     - TLSA lookups and matching a server's chain against them (RFC 7672);
* ``certs``    - certificate chain verification outside the handshake (DANE-TA, MTA-STS testing);
* ``mtasts``   - MTA-STS TXT records and policy files (RFC 8461); ``sts`` finds and caches them;
* ``https``    - HTTPS requests through the MX resolver (policy fetches, report uploads);
* ``values``   - small durable values in the queue's database (policy cache, report counts);
* ``outcomes`` - what each host's policy led to: attempt texts, report counts, events;
* ``tlsrpt``   - RFC 8460 counts and report JSON; ``reports`` and ``reportmail`` send the reports.

Sessions (greeting, EHLO, STARTTLS), their reuse per MX host and the
transaction are the shared outbound stack in ``plugins/outbound``.

``route`` groups recipients by domain (one route, so one transaction, per
domain per attempt); ``deliver`` looks the MX hosts up at delivery time, so a
DNS failure becomes each recipient's outcome; ``explain_route`` is the dry run.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import ssl
from typing import Any

from mailpipe.core.errors import ConfigError, Reply
from mailpipe.core.hookspecs import hookimpl
from mailpipe.core.message import Credentials, Message, RecipientResult, Route
from mailpipe.core.plugin import Plugin, PluginContext
from mailpipe.core.tlsfiles import client_tls_context
from mailpipe.plugins.limits import Limiter
from mailpipe.plugins.outbound.pool import ConnectionPool
from mailpipe.plugins.outbound.session import ClientSettings
from mailpipe.plugins.outbound.tls import TlsPolicy

from .attempt import Dialing, attempt
from .dnsfail import DnsFailure
from .https import HttpsClient
from .limits import Limits
from .mx import MxResolver, Myself
from .options import DirectOptions
from .outcomes import PolicyOutcomes
from .reports import TlsReporter
from .security import TransportSecurity
from .sts import StsPolicies
from .tlsrpt import TlsCounters
from .values import Values

#: How often the TLS-report counts are stored and due reports sent (seconds).
REPORT_EVERY = 300.0
#: How long an MTA-STS policy read from the queue database is used without reading it again (seconds).
STS_REMEMBER = 300.0

__all__ = ["DirectOptions", "DirectPlugin"]


def recipient_domain(address: str) -> str:
    """The domain of ``local@domain`` in lower case ("" when there is none)."""
    local, at, domain = address.rpartition("@")
    return domain.strip().rstrip(".").lower() if at and local else ""


class DirectPlugin(Plugin):
    """Delivers straight to each recipient domain's MX hosts, found through DNS.

    Called by the scheduler: ``route`` takes every recipient it is offered
    (place ``direct`` last, after any smarthost that takes some domains),
    ``deliver`` runs one SMTP transaction per domain, ``explain_route`` answers
    ``pipeline route ADDRESS``.
    """

    name = "direct"
    Options = DirectOptions

    def __init__(
        self, options: DirectOptions, context: PluginContext, *, instance_name: str | None = None,
    ) -> None:
        super().__init__(options, context, instance_name=instance_name)
        o = self.opts
        delivery = context.settings.delivery
        self.port = o.port or delivery.port
        timeout = o.timeout or delivery.timeout
        # without a policy the certificate is never checked: a name the MX lookup gave cannot be trusted anyway
        fallback = TlsPolicy(o.tls, verify=False)
        settings = ClientSettings(context.settings.hostname, timeout, fallback)
        self.dialing = Dialing(self.port, settings, o.connect_timeout or timeout, o.prefer_ipv6, o.happy_eyeballs_delay)
        validating = o.dnssec == "validating"
        self.resolver = MxResolver(o.nameservers, timeout=o.dns_timeout, ip_version=o.ip_version,
                                   validating=validating)
        ca_file = context.resolve_path(o.ca_file) if o.ca_file else None
        try:
            verified = client_tls_context(verify=True, ca_file=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"{self.instance_name}: ca_file {ca_file}: {getattr(exc, 'strerror', None) or exc}"
                              ) from None
        self.https = HttpsClient(self.resolver, verified, port=o.mta_sts_port, timeout=min(timeout, 20.0),
                                 user_agent=f"mailpipe ({context.settings.hostname})")
        now = context.clock.now
        cache = Values("mta-sts", context.queue, remember=STS_REMEMBER)
        self.sts = StsPolicies(self.resolver, self.https, cache, now) if o.mta_sts else None
        self.security = TransportSecurity(resolver=self.resolver, port=self.port, dane=o.dane_mode,
                                          validating=validating, sts=self.sts, ca_file=ca_file, fallback=fallback)
        self.counters = TlsCounters() if o.tls_reports else None
        self.outcomes = PolicyOutcomes(self.counters, context.emit, now)
        self.reports = self._reporter(context) if self.counters is not None else None
        self._reporting: asyncio.Task[None] | None = None
        own_name = context.settings.hostname.lower().rstrip(".")
        self.myself = Myself(frozenset({own_name}), self._listen_endpoints())
        self.limits = Limits(o.max_connections, o.max_connections_per_domain)
        self.sending_limits = Limiter(o.limits, o.backoff, context, self.instance_name)
        self.pool = ConnectionPool(
            max_connections=o.max_connections, max_messages=o.max_messages_per_connection,
            idle_timeout=o.idle_timeout, probe_timeout=min(timeout, 10.0), reuse=o.connection_reuse,
        )

    @property
    def opts(self) -> DirectOptions:
        return self.options  # type: ignore[return-value]

    def _reporter(self, context: PluginContext) -> TlsReporter:
        hostname = context.settings.hostname
        queue = context.queue
        control = context.control
        return TlsReporter(
            counters=self.counters or TlsCounters(), values=Values("tls-reports", queue), resolver=self.resolver,
            https=self.https, submitter=hostname, sender=self.opts.tls_reports_from or f"postmaster@{hostname}",
            node=f"{hostname}/{self.instance_name}", now=context.clock.now,
            store=queue.store if queue is not None else None, emit=context.emit,
            wake=control.wake if control is not None else None,
        )

    def take_over(self, old: Plugin) -> None:
        """A reload replaced ``old``: domains that asked to slow down stay slowed (``limits``)."""
        if isinstance(old, DirectPlugin):
            self.sending_limits.take_over(old.sending_limits)

    def _listen_endpoints(self) -> frozenset[tuple[str, int]]:
        out = set()
        for spec in self.context.settings.listen:
            try:
                out.add((str(ipaddress.ip_address(spec.host)), spec.port))
            except ValueError:  # a listen host name: only the hostname check applies
                continue
        return frozenset(out)

    # -- hooks ------------------------------------------------------------------------------

    @hookimpl
    def route(self, message: Message, recipients: list[str]) -> list[Route] | None:
        """Group the recipients by domain: one ``direct`` route (one transaction) per domain.

        Takes every recipient it is offered; the MX lookup waits for ``deliver``.
        """
        by_domain: dict[str, list[str]] = {}
        for rcpt in recipients:
            by_domain.setdefault(recipient_domain(rcpt), []).append(rcpt)
        routes = [Route(self.instance_name, "direct", domain, rcpts) for domain, rcpts in by_domain.items()]
        return routes or None

    @hookimpl
    async def deliver(
        self, message: Message, route: Route, credentials: Credentials,
    ) -> list[RecipientResult] | None:
        """Look up the domain's MX hosts and deliver there; one result per recipient.

        Called only for routes this entry made. DNS failures give every
        recipient the mapped outcome (see ``dnsfail``); temporary ones also emit
        a ``dns.failure`` event. Direct delivery never logs in: ``credentials``
        are not used. Recipients over a sending limit (``limits``), or held back
        while the domain asked to slow down (``backoff``), are deferred until their
        next slot without a transaction (``plugins/limits``).
        """
        domain = route.destination
        label = f"direct:{domain}"
        if not domain:
            reply = Reply(553, "5.1.3", "recipient address has no domain; direct delivery needs one")
            return RecipientResult.for_all(route.recipients, reply, route=label)
        async with self.sending_limits.admit(message, route.recipients, destination=domain, route=label) as admitted:
            if admitted.recipients:
                admitted.sent = await self._deliver_domain(message, domain, admitted.recipients, label)
        return admitted.results

    async def _deliver_domain(self, message: Message, domain: str, recipients: list[str],
                              label: str) -> list[RecipientResult]:
        """MX lookup, then one transaction for ``recipients`` through the first MX host that takes it."""
        try:
            plan = await self.resolver.plan(domain, myself=self.myself, port=self.port)
        except DnsFailure as failure:
            if failure.temporary:
                self.context.emit("dns.failure", f"{message.id}: {failure.reply}", level="warning",
                                  message=message.id, domain=domain, failure=failure.kind)
            elif failure.kind == "loop":
                self.context.emit("mail.loop", f"{message.id}: {failure.reply}", level="error",
                                  message=message.id, domain=domain)
            return RecipientResult.for_all(recipients, failure.reply, route=label)
        plan.hosts = plan.hosts[: self.opts.max_hosts_per_attempt]
        security = await self.security.plan(domain, plan)
        data = await message.body()
        async with self.limits.slot(domain):
            return await attempt(message, recipients, security, data, pool=self.pool,
                                 dialing=self.dialing, route=label, log=self.log, outcomes=self.outcomes)

    @hookimpl
    async def explain_route(self, route: Route) -> dict[str, Any] | None:
        """For ``pipeline route ADDRESS``: MX hosts in try order with addresses, port, TLS, credentials,
        and the transport security (DNSSEC, DANE, MTA-STS) each host would get, and why.

        Only DNS lookups (and the MTA-STS policy fetch, not cached) are made; no mail is sent. A
        DNS failure is shown as the outcome the recipients would get.
        """
        facts: dict[str, Any] = {"dns": self.resolver.describe()}
        try:
            plan = await self.resolver.plan(route.destination, myself=self.myself, port=self.port)
        except DnsFailure as failure:
            facts["error"] = str(failure.reply)
            facts["outcome"] = (
                "temporary: deferred and retried" if failure.temporary else "permanent: bounced at once"
            )
        else:
            cap = self.opts.max_hosts_per_attempt
            facts["mx"] = [h.describe() for h in plan.hosts[:cap]]
            if len(plan.hosts) > cap:
                facts["not tried (max_hosts_per_attempt)"] = [h.describe() for h in plan.hosts[cap:]]
            if plan.skipped:
                facts["skipped"] = plan.skipped
            if any(len({":" in a for a in h.addresses}) > 1 for h in plan.hosts):
                facts["address order"] = "IPv6 first" if self.opts.prefer_ipv6 else "IPv4 first"
            plan.hosts = plan.hosts[:cap]
            security = await self.security.plan(route.destination, plan, store=False)
            facts.update(security.facts)
            facts["transport security"] = [h.describe() for h in security.hosts]
        facts["port"] = self.port
        facts["tls"] = self.opts.tls
        facts["credentials"] = "none (direct delivery does not log in)"
        if self.opts.limits:
            facts["limits"] = [f"{spec.rate} per {spec.per}" for spec in self.opts.limits]
        return facts

    @hookimpl
    async def startup(self, context: PluginContext) -> None:
        """Called by the gateway once the queue is open: start storing TLS-report counts and sending reports."""
        if self.reports is not None and context.queue is not None:
            queue = context.queue

            async def due(now: float) -> bool:
                return await queue.run_once("direct.tls-reports", now, REPORT_EVERY)

            self._reporting = asyncio.get_running_loop().create_task(self.reports.run(REPORT_EVERY, due))

    @hookimpl
    async def shutdown(self) -> None:
        """Called by the gateway when it stops: QUIT the sessions kept for reuse, store the report counts."""
        if self._reporting is not None:
            self._reporting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reporting
        if self.reports is not None:
            try:
                await self.reports.flush()
            except Exception:  # noqa: BLE001 - stopping anyway
                self.log.exception("cannot store the TLS-report counts")
        await self.pool.close()
