"""Sending the daily TLS reports (RFC 8460): stored counts, the ``rua`` lookup, mail and HTTPS delivery.

``TlsReporter.flush`` adds the counts gathered in memory (``TlsCounters``) to the stored
ones (``Values`` in the queue's database, one key per day, domain and node (the gateway's
hostname and the chain entry), so nodes never overwrite each other). ``send_due(now)``
sends the report of every domain and UTC day that ended at least ``grace`` ago: the
counts of every node are added up; a day without sessions sends nothing; the ``rua`` of
``_smtp._tls.DOMAIN`` (``v=TLSRPTv1``) says where: ``mailto:`` addresses get a mail
queued in mailpipe's own queue (delivered like any other mail, a ``250`` only from the
receiving server), ``https:`` addresses get a POST of the compressed report. The counts
of a sent day are forgotten. ``run`` does both periodically (every ``every`` seconds)
once the gateway is up.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import dns.exception
import dns.resolver

from mailpipe.core.ids import new_queue_id
from mailpipe.core.message import Message, Recipient

from .https import HttpsClient, HttpsError
from .mx import MxResolver
from .reportmail import filename, report_mail
from .tlsrpt import DomainDay, TlsCounters, day_bounds, report_json
from .values import Values

log = logging.getLogger("mailpipe.plugins.direct")

KEEP_DAYS = 3  # a day whose report cannot be sent (rua lookup failing) is given up after this many days


@dataclass(frozen=True)
class Rua:
    """Where a domain wants its reports: mail addresses and HTTPS URLs."""

    mailto: tuple[str, ...]
    https: tuple[str, ...]


def parse_rua(records: list[str]) -> Rua | None:
    """The ``rua`` of the TXT strings at ``_smtp._tls.DOMAIN``; None without exactly one ``v=TLSRPTv1``."""
    found = [r for r in records if r.replace(" ", "").startswith("v=TLSRPTv1")]
    if len(found) != 1:
        return None
    mailto: list[str] = []
    https: list[str] = []
    for part in found[0].split(";"):
        key, _, value = part.strip().partition("=")
        if key.strip() != "rua":
            continue
        for uri in value.split(","):
            uri = uri.strip()
            if uri.lower().startswith("mailto:"):
                address = urllib.parse.unquote(uri[7:].split("?")[0])
                if "@" in address:
                    mailto.append(address)
            elif uri.lower().startswith("https://"):
                https.append(uri)
    return Rua(tuple(mailto), tuple(https)) if mailto or https else None


@dataclass(kw_only=True, eq=False)
class TlsReporter:
    """Stores the counts and sends the reports of one gateway node (see the module text).

    ``store`` queues a report mail (None: mail reports are not sent), ``emit`` emits an
    event, ``wake`` tells the scheduler a report was queued.
    """

    counters: TlsCounters
    values: Values
    resolver: MxResolver
    https: HttpsClient
    submitter: str
    sender: str
    node: str
    now: Callable[[], float]
    store: Callable[[Message, bytes], Awaitable[None]] | None
    emit: Callable[..., Any]
    wake: Callable[[], None] | None = None
    grace: float = 900.0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False, repr=False)

    async def flush(self) -> None:
        """Add the counts gathered in memory to the stored ones (called periodically and at shutdown)."""
        async with self._lock:
            taken = {f"{day}|{domain}|{self.node}": counts for (day, domain), counts in self.counters.take().items()}
            keys = list(taken)
            # concurrently, so that the queue's group commit stores them together
            stored = await asyncio.gather(*(self.values.get(key) for key in keys))
            await asyncio.gather(*(self.values.put(key, DomainDay.from_json(old).merge(taken[key]).to_json())
                                   for key, old in zip(keys, stored, strict=True)))

    async def send_due(self, now: float | None = None) -> list[str]:
        """Send every report whose day ended ``grace`` ago; the ids of the reports sent."""
        now = self.now() if now is None else now
        await self.flush()
        async with self._lock:
            days: dict[tuple[str, str], list[str]] = {}
            for key in await self.values.items():
                day, _, rest = key.partition("|")
                domain = rest.partition("|")[0]
                if day_bounds(day)[1] + self.grace <= now:
                    days.setdefault((day, domain), []).append(key)
            sent: list[str] = []
            for (day, domain), keys in sorted(days.items()):
                counts = DomainDay()
                for key in keys:
                    counts.merge(DomainDay.from_json(await self.values.get(key)))
                done = await self._send(day, domain, counts, now, sent)
                if done or day_bounds(day)[1] + KEEP_DAYS * 86400 <= now:
                    for key in keys:
                        await self.values.delete(key)
            return sent

    async def _send(self, day: str, domain: str, counts: DomainDay, now: float, sent: list[str]) -> bool:
        """Send one report; False when it should be tried again later (the rua lookup failed)."""
        if counts.sessions == 0:
            return True
        try:
            rua = await self._rua(domain)
        except dns.exception.DNSException as exc:
            log.info("TLS report for %s (%s) waits: _smtp._tls lookup failed: %s", domain, day, exc)
            return False
        if rua is None:
            return True
        report_id = f"{day}.{domain}.{new_queue_id(now)}@{self.submitter}"
        body = report_json(day, domain, counts, organization=self.submitter, contact=self.sender,
                           report_id=report_id)
        gz = gzip.compress(json.dumps(body, indent=1).encode(), mtime=0)
        start, end = day_bounds(day)
        name = filename(self.submitter, domain, start, end - 1, new_queue_id(now))
        where: list[str] = []
        if rua.mailto and self.store is not None:
            data = report_mail(sender=self.sender, recipients=list(rua.mailto), submitter=self.submitter,
                               domain=domain, report_id=report_id, gz=gz, name=name, now=now, day=day)
            message = Message(new_queue_id(now), self.sender, [Recipient(a) for a in rua.mailto], now,
                              size=len(data), attributes={"tls_report": domain})
            await self.store(message, data)
            where += [f"mailto:{a}" for a in rua.mailto]
            if self.wake is not None:
                self.wake()
        for url in rua.https:
            if await self._post(url, gz, domain):
                where.append(url)
        sent.append(report_id)
        self.emit("tls.report", f"TLS report {report_id} about {domain} on {day} ({counts.sessions} session(s)) "
                                f"sent to {', '.join(where) or 'nobody (every rua failed)'}",
                  domain=domain, day=day, report=report_id, rua=where)
        return True

    async def _rua(self, domain: str) -> Rua | None:
        try:
            answer = await self.resolver.query(f"_smtp._tls.{domain}", "TXT")
        except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
            return None
        return parse_rua([b"".join(r.strings).decode("utf-8", "replace") for r in answer])

    async def _post(self, url: str, gz: bytes, domain: str) -> bool:
        parts = urllib.parse.urlsplit(url)
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        try:
            answer = await self.https.request("POST", parts.hostname or "", path, gz,
                                              {"Content-Type": "application/tlsrpt+gzip"}, port=parts.port)
        except HttpsError as exc:
            self.emit("tls.report_failed", f"TLS report about {domain} not posted: {exc}", level="warning",
                      domain=domain, url=url)
            return False
        if not 200 <= answer.status < 300:
            self.emit("tls.report_failed", f"TLS report about {domain} not posted: {url} answered HTTP "
                                           f"{answer.status}", level="warning", domain=domain, url=url)
            return False
        return True

    async def run(self, every: float, due: Callable[[float], Awaitable[bool]]) -> None:
        """Flush and send periodically until cancelled; ``due(now)`` says whether this node sends now."""
        while True:
            await asyncio.sleep(every)
            try:
                now = self.now()
                if await due(now):
                    await self.send_due(now)
                else:
                    await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - reporting never stops the gateway
                log.exception("TLS reporting failed; trying again in %.0fs", every)
