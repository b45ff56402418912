"""MX lookup and ordering (RFC 5321 section 5.1) through the configured DNS servers.

``MxResolver.plan(domain)`` answers with an ``MxPlan``: the MX hosts in the
order they are to be tried, each with its addresses, or raises ``DnsFailure``
(see ``dnsfail`` for which failures are permanent). Order: ascending
preference, equal preferences shuffled. No MX records: the domain itself is the
only host (implicit MX). Null MX: permanent failure. Hosts that are this
gateway, and every host not better than it, are dropped; when this gateway is
the best host, the mail would loop: permanent failure.

With ``validating=True`` (``dnssec: validating``) queries carry the AD bit and the
answers' AD bit is kept: ``MxPlan.secure`` says the MX RRset (or, for an implicit MX,
the domain's addresses) was DNSSEC-authenticated, ``MxHost.secure`` the same of a
host's addresses. Without it nothing is ever secure: a resolver that is not named as
validating is never trusted, and never turns an answer into a failure either.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
from collections.abc import Iterable
from dataclasses import dataclass, field

import dns.asyncresolver
import dns.exception
import dns.flags
import dns.message
import dns.nameserver
import dns.resolver

from . import dnsfail


@dataclass(frozen=True)
class MxHost:
    """One host to try: its name, MX preference and addresses (IPv6 and IPv4, as found).

    ``secure``: the address lookups were DNSSEC-authenticated (a DANE TLSA lookup is made
    only for such hosts).
    """

    name: str
    preference: int
    addresses: tuple[str, ...]
    implicit: bool = False
    secure: bool = False

    def describe(self) -> str:
        """``10 mx1.example [192.0.2.1, 2001:db8::1]`` (what ``pipeline route`` prints)."""
        tag = " (implicit MX: the domain has no MX records)" if self.implicit else ""
        return f"{self.preference} {self.name} [{', '.join(self.addresses)}]{tag}"


@dataclass
class MxPlan:
    """The hosts of one domain in the order they are to be tried, and what was left out and why.

    ``secure``: the MX RRset (for an implicit MX: the domain's addresses) was
    DNSSEC-authenticated, the first condition of DANE.
    """

    domain: str
    hosts: list[MxHost]
    skipped: list[str] = field(default_factory=list)
    secure: bool = False


@dataclass(frozen=True)
class Myself:
    """What counts as this gateway when an MX list is checked for loops.

    ``names``: this gateway's host names; ``endpoints``: the (address, port)
    pairs it listens on. An MX host is "me" when its name is one of ``names`` or
    one of its addresses, on the port mail would be sent to, is a listen
    endpoint (a wildcard listen address covers every loopback address).
    """

    names: frozenset[str]
    endpoints: frozenset[tuple[str, int]]

    def is_me(self, host: MxHost, port: int) -> bool:
        if host.name.lower().rstrip(".") in self.names:
            return True
        for addr in host.addresses:
            if (addr, port) in self.endpoints:
                return True
            wildcard = ("0.0.0.0", port) if ":" not in addr else ("::", port)
            if wildcard in self.endpoints and ipaddress.ip_address(addr).is_loopback:
                return True
        return False


def order_records(records: Iterable[tuple[int, str]], rng: random.Random) -> list[tuple[int, str]]:
    """MX records by ascending preference; records of equal preference in random order."""
    by_pref: dict[int, list[str]] = {}
    for pref, name in records:
        names = by_pref.setdefault(pref, [])
        if name not in names:
            names.append(name)
    ordered: list[tuple[int, str]] = []
    for pref in sorted(by_pref):
        names = by_pref[pref]
        rng.shuffle(names)
        ordered += [(pref, n) for n in names]
    return ordered


def address_literal(domain: str) -> str | None:
    """The address of a domain literal (``[192.0.2.1]``, ``[IPv6:2001:db8::1]``), else None."""
    if not (domain.startswith("[") and domain.endswith("]")):
        return None
    inner = domain[1:-1]
    if inner.lower().startswith("ipv6:"):
        inner = inner[5:]
    try:
        return str(ipaddress.ip_address(inner))
    except ValueError:
        return None


class MxResolver:
    """dnspython's asyncio resolver pointed at the configured DNS servers (system resolver if none)."""

    def __init__(
        self, nameservers: list[tuple[str, int]], *, timeout: float, ip_version: str = "any",
        rng: random.Random | None = None, validating: bool = False,
    ) -> None:
        self.nameservers = nameservers
        self.timeout = timeout
        self.ip_version = ip_version
        self.validating = validating
        self.rng = rng or random.Random()
        self._resolver: dns.asyncresolver.Resolver | None = None

    def resolver(self) -> dns.asyncresolver.Resolver:
        """Built on first use; raises ``NoResolverConfiguration`` when no server is named or configured."""
        if self._resolver is None:
            if self.nameservers:
                res = dns.asyncresolver.Resolver(configure=False)
                res.nameservers = [dns.nameserver.Do53Nameserver(a, p) for a, p in self.nameservers]
            else:
                res = dns.asyncresolver.Resolver(configure=True)
            res.lifetime = self.timeout
            res.timeout = min(self.timeout, 2.0)
            res.cache = dns.resolver.LRUCache(2000)  # honours each answer's TTL
            if self.validating:  # ask for the AD bit (RFC 6840 5.7); EDNS for TLSA and TXT sets
                res.flags = dns.flags.RD | dns.flags.AD
                res.use_edns(0, 0, 1232)
            self._resolver = res
        return self._resolver

    def describe(self) -> str:
        """The DNS servers in use, for ``pipeline route``."""
        if self.nameservers:
            return ", ".join(f"[{a}]:{p}" if ":" in a else f"{a}:{p}" for a, p in self.nameservers)
        try:
            return "system resolver (" + ", ".join(str(n) for n in self.resolver().nameservers) + ")"
        except dns.exception.DNSException:
            return "system resolver (none configured)"

    async def query(self, name: str, rdtype: str) -> dns.resolver.Answer:
        """One lookup through the configured servers (dnspython's exceptions pass through)."""
        return await self.resolver().resolve(name, rdtype, search=False)

    def secure(self, found: dns.resolver.Answer | BaseException) -> bool:
        """Whether an answer (or a NoAnswer/NXDOMAIN) carries the AD bit of a resolver named as validating."""
        if not self.validating:
            return False
        if isinstance(found, dns.resolver.Answer):
            response = found.response
        elif isinstance(found, dns.resolver.NoAnswer):
            response = found.kwargs.get("response")
        elif isinstance(found, dns.resolver.NXDOMAIN):
            responses = list(found.responses().values())
            response = responses[0] if responses else None
        else:
            return False
        return isinstance(response, dns.message.Message) and bool(response.flags & dns.flags.AD)

    async def addresses(self, name: str) -> tuple[list[str], list[BaseException]]:
        """AAAA and A records of ``name`` (as allowed by ``ip_version``) and the lookups that failed.

        NXDOMAIN and "no such record" are not errors: they just give no address.
        """
        found, errors, _ = await self.addresses_secure(name)
        return found, errors

    async def addresses_secure(self, name: str) -> tuple[list[str], list[BaseException], bool]:
        """``addresses`` and whether every lookup made was DNSSEC-authenticated."""
        kinds = {"any": ["AAAA", "A"], "ipv6": ["AAAA"], "ipv4": ["A"]}[self.ip_version]
        answers = await asyncio.gather(*(self.query(name, k) for k in kinds), return_exceptions=True)
        found: list[str] = []
        errors: list[BaseException] = []
        secure = True
        for answer in answers:
            secure = secure and self.secure(answer)
            if isinstance(answer, dns.resolver.NoAnswer | dns.resolver.NXDOMAIN):
                continue
            if isinstance(answer, BaseException):
                errors.append(answer)
                continue
            found += [r.address for r in answer]
        return found, errors, secure and not errors

    async def plan(self, domain: str, *, myself: Myself, port: int) -> MxPlan:
        """The hosts of ``domain`` in try order; raises ``DnsFailure``."""
        literal = address_literal(domain)
        if literal is not None:
            host = MxHost(domain, 0, (literal,), implicit=True)
            if myself.is_me(host, port):
                raise dnsfail.loop(domain, host.name)
            return MxPlan(domain, [host])
        try:
            answer = await self.query(domain, "MX")
            records = [(r.preference, r.exchange.to_text(omit_final_dot=True).lower()) for r in answer]
            secure = self.secure(answer)
        except dns.resolver.NoAnswer:
            records = []
        except (dns.exception.DNSException, ValueError) as exc:
            raise dnsfail.classify(exc, domain, "MX") from exc
        if any(name in ("", ".") for _, name in records):
            raise dnsfail.null_mx(domain)
        if not records:
            return await self._implicit(domain, myself, port)
        plan = await self._explicit(domain, order_records(records, self.rng), myself, port)
        plan.secure = secure
        return plan

    async def _implicit(self, domain: str, myself: Myself, port: int) -> MxPlan:
        try:
            found, errors, secure = await self.addresses_secure(domain)
        except (dns.exception.DNSException, ValueError) as exc:
            raise dnsfail.classify(exc, domain, "A/AAAA") from exc
        if not found:
            if errors:
                raise dnsfail.classify(errors[0], domain, "A/AAAA")
            raise dnsfail.no_data(domain)
        host = MxHost(domain.lower(), 0, tuple(found), implicit=True, secure=secure)
        if myself.is_me(host, port):
            raise dnsfail.loop(domain, host.name)
        return MxPlan(domain, [host], secure=secure)

    async def _explicit(
        self, domain: str, records: list[tuple[int, str]], myself: Myself, port: int,
    ) -> MxPlan:
        lookups = await asyncio.gather(*(self.addresses_secure(name) for _, name in records))
        hosts: list[MxHost] = []
        skipped: list[str] = []
        temp_errors: list[BaseException] = []
        for (pref, name), (found, errors, secure) in zip(records, lookups, strict=True):
            if found:
                hosts.append(MxHost(name, pref, tuple(found), secure=secure))
            elif errors:
                temp_errors += errors
                skipped.append(f"{pref} {name}: {dnsfail.classify(errors[0], name, 'A/AAAA').reply.text}")
            else:
                skipped.append(f"{pref} {name}: no A/AAAA records")
        mine = [h.preference for h in hosts if myself.is_me(h, port)]
        if mine:
            best_me = min(mine)
            dropped = [h for h in hosts if h.preference >= best_me]
            hosts = [h for h in hosts if h.preference < best_me]
            skipped += [f"{h.preference} {h.name}: not better than this gateway" for h in dropped]
            if not hosts:
                me = next(h.name for h in dropped if myself.is_me(h, port))
                raise dnsfail.loop(domain, me)
        if not hosts:
            if temp_errors:
                raise dnsfail.classify(temp_errors[0], domain, "MX host addresses")
            raise dnsfail.no_mx_address(domain, "; ".join(skipped))
        return MxPlan(domain, hosts, skipped)
