"""MTA-STS policies per recipient domain: TXT lookup, HTTPS fetch, durable cache (RFC 8461 section 5).

``StsPolicies.lookup(domain)``:

1. ``_mta-sts.DOMAIN`` TXT through the MX resolver: its ``id`` (or none, or a failed lookup);
2. a cached policy that has not outlived its ``max_age`` and was fetched for this id is used as is;
3. otherwise (new domain, changed id, cache expired) the policy is fetched from
   ``https://mta-sts.DOMAIN/.well-known/mta-sts.txt`` (status 200, ``text/plain``, at most
   64 KiB, within the time limit, certificate valid for that name) and cached;
4. when the TXT record is missing or its lookup failed, or the fetch failed, a cached policy
   still within its ``max_age`` is used; without one the domain has no policy (and a failed
   fetch is reported: ``sts-policy-fetch-error``/``sts-policy-invalid``).

A fetch that failed is not tried again for the same id for ``retry_after`` seconds (5
minutes): deliveries to a domain whose policy server is down do not each wait for it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import dns.exception
import dns.resolver

from .https import HttpsClient, HttpsError
from .mtasts import StsError, StsPolicy, parse_policy, txt_id
from .mx import MxResolver
from .values import Values

WELL_KNOWN = "/.well-known/mta-sts.txt"


@dataclass(frozen=True)
class StsLookup:
    """The policy in force for a domain (None: no MTA-STS), where it came from, and why.

    ``source``: ``fetched``, ``cache`` or ""; ``failure``: the RFC 8460 result type of a
    failed fetch that left the domain without a policy.
    """

    policy: StsPolicy | None
    source: str
    note: str
    failure: str = ""


class StsPolicies:
    """Finds and caches MTA-STS policies; one per ``direct`` instance."""

    def __init__(self, resolver: MxResolver, client: HttpsClient, values: Values, now: Callable[[], float]) -> None:
        self.resolver = resolver
        self.client = client
        self.values = values
        self.now = now
        self.fetches = 0  # policy fetches made (for tests and explain)
        self.retry_after = 300.0
        self._failed: dict[str, tuple[str, float, str]] = {}  # domain -> (id, until, why) of a failed fetch
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}  # per domain: one lookup at a time, and its users

    async def cached(self, domain: str) -> StsPolicy | None:
        """The cached policy of ``domain`` if it has not outlived its ``max_age``."""
        raw = await self.values.get(domain)
        if raw is None:
            return None
        try:
            policy = StsPolicy.from_json(json.loads(raw))
        except (ValueError, KeyError, TypeError):
            return None
        return policy if policy.valid_at(self.now()) else None

    async def lookup(self, domain: str, *, store: bool = True) -> StsLookup:
        """The policy for ``domain`` (see the module text); ``store=False`` leaves the cache as it is.

        Deliveries to one domain at the same time wait for one another here, so a policy is
        fetched once, not once per delivery.
        """
        lock, users = self._locks.get(domain, (asyncio.Lock(), 0))
        self._locks[domain] = (lock, users + 1)
        try:
            async with lock:
                return await self._lookup(domain, store)
        finally:
            lock, users = self._locks[domain]
            if users == 1:
                del self._locks[domain]
            else:
                self._locks[domain] = (lock, users - 1)

    async def _lookup(self, domain: str, store: bool) -> StsLookup:
        cached = await self.cached(domain)
        try:
            ident = await self._txt_id(domain)
        except StsError as exc:
            return self._fallback(cached, f"{exc}")
        if ident is None:
            return self._fallback(cached, f"no MTA-STS TXT record at _mta-sts.{domain}")
        if cached is not None and cached.id == ident:
            return StsLookup(cached, "cache", f"cached policy id {ident}, valid until {_utc(cached.expires)}")
        failed = self._failed.get(domain)
        if failed is not None and failed[0] == ident and self.now() < failed[1]:
            return self._fallback(cached, f"{failed[2]} (not tried again before {_utc(failed[1])})")
        try:
            policy = await self.fetch(domain, ident)
        except StsError as exc:
            why = f"policy id {ident} could not be fetched: {exc}"
            if store:
                if len(self._failed) >= 10_000:  # forget the failures whose wait is over
                    self._failed = {d: f for d, f in self._failed.items() if f[1] > self.now()}
                self._failed[domain] = (ident, self.now() + self.retry_after, why)
            if cached is not None:
                return StsLookup(cached, "cache", f"{why}; the cached policy id {cached.id} is used")
            return StsLookup(None, "", why, exc.result_type)
        self._failed.pop(domain, None)
        if store:
            await self.values.put(domain, json.dumps(policy.to_json()))
        change = f" (replaces cached id {cached.id})" if cached is not None else ""
        return StsLookup(policy, "fetched", f"policy id {ident} fetched{change}")

    async def fetch(self, domain: str, ident: str) -> StsPolicy:
        """Fetch and parse the policy of ``domain``; raises ``StsError``."""
        host = f"mta-sts.{domain}"
        self.fetches += 1
        try:
            answer = await self.client.request("GET", host, WELL_KNOWN)
        except HttpsError as exc:
            raise StsError(str(exc), "sts-webpki-invalid" if exc.certificate else "sts-policy-fetch-error") from exc
        if answer.status != 200:
            raise StsError(f"https://{host}{WELL_KNOWN} answered HTTP {answer.status}", "sts-policy-fetch-error")
        if answer.media_type != "text/plain":
            raise StsError(f"https://{host}{WELL_KNOWN} is {answer.media_type or 'untyped'}, not text/plain")
        try:
            text = answer.body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise StsError(f"policy of {domain} is not UTF-8") from exc
        return parse_policy(text, ident, self.now())

    async def _txt_id(self, domain: str) -> str | None:
        try:
            answer = await self.resolver.query(f"_mta-sts.{domain}", "TXT")
        except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
            return None
        except (dns.exception.DNSException, ValueError) as exc:
            raise StsError(f"TXT lookup of _mta-sts.{domain} failed: {type(exc).__name__}") from exc
        return txt_id([b"".join(r.strings).decode("utf-8", "replace") for r in answer])

    @staticmethod
    def _fallback(cached: StsPolicy | None, why: str) -> StsLookup:
        if cached is not None:
            return StsLookup(cached, "cache", f"{why}; cached policy id {cached.id} valid until "
                                              f"{_utc(cached.expires)}")
        return StsLookup(None, "", why)


def _utc(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
