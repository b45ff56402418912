"""One delivery attempt for the recipients of one domain: walk the MX hosts until one takes it.

The next host is tried when a host cannot be connected to (refused,
unreachable, timed out), greets with anything but 220 (421 included), fails
EHLO/STARTTLS, does not meet its transport security policy (``security``:
DANE, MTA-STS), or answers *every* recipient with a temporary failure before
anything was delivered. A host its policy refuses outright (TLSA lookup failed,
not an MTA-STS mx) is not connected to. A permanent answer, or any delivered
recipient, ends the attempt with those per-recipient outcomes. When every host
failed to give a session, each recipient gets a temporary outcome naming what
each host did, so the retry policy tries again later. Every reply carries the
host's policy, TLS version and verification result (``outcomes.tls_note``).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from dataclasses import dataclass

from mailpipe.core.errors import Reply
from mailpipe.core.message import Message, Outcome, RecipientResult
from mailpipe.plugins.outbound.pool import ConnectionPool, Opener, PoolKey
from mailpipe.plugins.outbound.replies import OutboundError, none_usable
from mailpipe.plugins.outbound.session import ClientSettings, open_session
from mailpipe.plugins.outbound.tls import TlsPolicy
from mailpipe.plugins.outbound.transaction import send_pooled

from .hosts import connect_first, interleave
from .mx import MxHost
from .outcomes import PolicyOutcomes, tagged, tls_note
from .security import SecurityPlan


@dataclass(frozen=True)
class Dialing:
    """How MX hosts are reached: port, session settings, connect time-out, address order and stagger."""

    port: int
    settings: ClientSettings
    connect_timeout: float
    prefer_ipv6: bool = True
    happy_eyeballs_delay: float = 0.3

    def open(self, host: MxHost, tls: TlsPolicy | None = None) -> Opener:
        """A pool opener for ``host``: race its addresses, then greeting, EHLO, TLS (``tls``: the host's policy)."""
        addresses = interleave(list(host.addresses), prefer_ipv6=self.prefer_ipv6)
        connect = functools.partial(connect_first, host.name, addresses, self.port,
                                    timeout=self.connect_timeout, delay=self.happy_eyeballs_delay)
        settings = self.settings if tls is None else dataclasses.replace(self.settings, tls=tls)
        return functools.partial(open_session, host.name, self.port, settings, connect=connect)


async def attempt(
    message: Message, recipients: list[str], plan: SecurityPlan, data: bytes, *,
    pool: ConnectionPool, dialing: Dialing, route: str, log: logging.Logger, outcomes: PolicyOutcomes,
) -> list[RecipientResult]:
    """Deliver ``data`` to ``recipients`` through the first host of ``plan`` that takes it (called by ``deliver``)."""
    failures: list[tuple[str, Reply]] = []
    last_results: list[RecipientResult] | None = None
    domain = plan.domain
    outcomes.domain_failures(plan, message.id)
    for hs in plan.hosts:
        host = hs.host
        if hs.refusal is not None:
            outcomes.refused(domain, hs, message.id)
            failures.append((host.name, hs.refusal))
            log.info("%s: %s for %s: %s; trying the next MX host", message.id, host.name, route, hs.refusal)
            continue
        try:
            session, results = await send_pooled(
                pool, PoolKey(host.name, dialing.port, hs.tls), dialing.open(host, hs.tls), message, recipients, data,
                route=route, opened=functools.partial(outcomes.opened, domain, hs, message_id=message.id))
        except OutboundError as exc:
            outcomes.not_opened(domain, hs, exc, message.id)
            reply = tagged(exc.reply, tls_note(hs))
            failures.append((host.name, reply))
            log.info("%s: %s for %s: %s; trying the next MX host", message.id, host.name, route, reply)
            continue
        note = tls_note(hs, session)
        for r in results:
            r.reply = tagged(r.reply, note)
        if not all(r.outcome is Outcome.TEMPORARY for r in results):
            return results
        last_results = results
        log.info("%s: %s for %s: %s; trying the next MX host", message.id, host.name, route, results[0].reply)
    if last_results is not None:
        return last_results
    final = none_usable(failures, "MX host")
    last_host = failures[-1][0] if failures else None
    return [RecipientResult(r, Outcome.TEMPORARY, final, last_host, None, route) for r in recipients]
