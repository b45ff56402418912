"""One delivery attempt for the recipients of one domain: walk the MX hosts until one takes it.

The next host is tried when a host cannot be connected to (refused,
unreachable, timed out), greets with anything but 220 (421 included), fails
EHLO/STARTTLS, or answers *every* recipient with a temporary failure before
anything was delivered. A permanent answer, or any delivered recipient, ends
the attempt with those per-recipient outcomes. When every host failed, each
recipient gets the last host's outcome (always temporary for connection-level
failures), so the retry policy tries again later.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from mailpipe.core.errors import Reply
from mailpipe.core.message import Message, Outcome, RecipientResult
from mailpipe.plugins.outbound.transaction import send

from .mx import MxHost
from .pool import SessionPool
from .session import HostFailed, SessionSettings, open_session

log = logging.getLogger("mailpipe.plugins.direct")


@dataclass
class HostTrail:
    """What happened at one host of an attempt (for logs and the final reply)."""

    host: str
    reply: Reply


def reusable(results: list[RecipientResult]) -> bool:
    """Whether the session is still in a known state: no 421 and no lost or timed-out connection."""
    return not any(r.reply.code == 421 or r.reply.enhanced == "4.4.2" for r in results)


async def attempt(
    message: Message, recipients: list[str], hosts: list[MxHost], data: bytes, *,
    pool: SessionPool, cfg: SessionSettings, route: str,
    on_host_failed: Callable[[MxHost, Reply], None] | None = None,
) -> list[RecipientResult]:
    """Deliver ``data`` to ``recipients`` through the first of ``hosts`` that takes it."""
    trail: list[HostTrail] = []
    last_results: list[RecipientResult] | None = None
    for host in hosts:
        session = await pool.take(host.name, cfg.port)
        if session is None:
            try:
                session = await open_session(host.name, list(host.addresses), cfg)
            except HostFailed as exc:
                trail.append(HostTrail(host.name, exc.reply))
                if on_host_failed is not None:
                    on_host_failed(host, exc.reply)
                continue
            pool.opened += 1
        results = await send(
            session.client, message, recipients, data, host=host.name, addr=session.address, route=route,
        )
        await pool.give_back(session, reusable=reusable(results))
        if all(r.outcome is Outcome.TEMPORARY for r in results):
            last_results = results
            trail.append(HostTrail(host.name, results[0].reply))
            if on_host_failed is not None:
                on_host_failed(host, results[0].reply)
            continue
        return results
    if last_results is not None:
        return last_results
    final = trail[-1].reply if trail else Reply(451, "4.4.0", "no MX host to try")
    if len(trail) > 1:
        earlier = "; ".join(f"{t.host}: {t.reply}" for t in trail[:-1])
        final = Reply(final.code, final.enhanced, f"{final.text} (also tried {earlier})"[:900])
    if final.code >= 500:  # connection-level failures never bounce: another attempt may find a host
        final = Reply(451, "4.4.0", final.text)
    host = trail[-1].host if trail else None
    return [RecipientResult(r, Outcome.TEMPORARY, final, host, None, route) for r in recipients]
