"""Which transport security each MX host of a domain gets, and why (docs/direct.md, "Transport security").

``TransportSecurity.plan(domain, mx_plan)`` answers with a ``HostSecurity`` per MX host,
in try order. Per host, the first that applies:

1. **DANE** (``dane`` not off, a validating resolver, the MX records and the host's
   addresses DNSSEC-authenticated, ``lookup_tlsa``): usable TLSA records: TLS required and
   the chain must match them; only unusable records: TLS required, unauthenticated; the
   TLSA lookup failed: the host is not tried (451 4.7.5, the next MX is);
2. ``dane: required`` and no DANE for the host: not tried (451 4.7.5);
3. **MTA-STS** ``enforce`` (``sts.StsPolicies``): a host the policy's ``mx`` patterns do not
   name is not tried (451 4.7.5); the others get TLS required with a certificate valid
   (``ca_file`` or system CAs) for the MX host name;
4. **MTA-STS** ``testing``: opportunistic TLS; what ``enforce`` would have refused is
   only reported;
5. otherwise the ``tls`` option (``opportunistic``, ``required`` or ``none``).

DANE comes before MTA-STS where both exist (RFC 8461 section 2). ``report`` says under
which RFC 8460 policy the host's sessions are counted (None: not reported).
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import InitVar, dataclass, field
from pathlib import Path
from typing import Any

from mailpipe.core.errors import Reply
from mailpipe.plugins.outbound.tls import TlsPolicy

from .certs import WebPkiCheck
from .dane import DaneCheck, Tlsa, TlsaLookup, lookup_tlsa
from .mtasts import StsPolicy
from .mx import MxHost, MxPlan, MxResolver
from .sts import StsLookup, StsPolicies


@dataclass(frozen=True)
class ReportPolicy:
    """The RFC 8460 ``policy`` object a host's sessions are counted under (with the policy domain)."""

    type: str  # tlsa, sts, no-policy-found
    strings: tuple[str, ...] = ()
    mx: tuple[str, ...] = ()

    def to_json(self, domain: str) -> dict[str, Any]:
        out: dict[str, Any] = {"policy-type": self.type, "policy-domain": domain}
        if self.strings:
            out["policy-string"] = list(self.strings)
        if self.mx:
            out["mx-host"] = list(self.mx)
        return out


NO_POLICY = ReportPolicy("no-policy-found")


@dataclass(frozen=True)
class HostSecurity:
    """One MX host with the policy that applies to it (``dane``, ``mta-sts``, ``opportunistic``,
    ``required``, ``none``), the client TLS policy for it, and why.

    ``refusal``: the host must not be tried; the reply it stands for (its RFC 8460
    ``failure`` word says why). ``testing``: MTA-STS in testing mode, failures only reported.
    """

    host: MxHost
    policy: str
    tls: TlsPolicy
    why: str
    refusal: Reply | None = None
    failure: str = ""
    report: ReportPolicy | None = None
    testing: bool = False

    def describe(self) -> str:
        """``10 mx.example: dane - why`` (what ``pipeline route`` prints)."""
        what = "not tried" if self.refusal is not None else self.policy
        return f"{self.host.preference} {self.host.name}: {what} ({self.why})"


@dataclass
class SecurityPlan:
    """The hosts of a domain with their security, and the domain-wide facts behind it.

    ``failures`` are policy failures of the domain as a whole (a policy fetch that failed),
    counted once per attempt.
    """

    domain: str
    hosts: list[HostSecurity]
    facts: dict[str, Any] = field(default_factory=dict)
    failures: list[tuple[ReportPolicy, str, str]] = field(default_factory=list)


@functools.lru_cache(maxsize=512)
def dane_tls(records: tuple[Tlsa, ...], names: tuple[str, ...]) -> TlsPolicy:
    """The client policy of a DANE host (one per TLSA set, so equal sets share pooled sessions)."""
    return TlsPolicy("required", verify=False, check=DaneCheck(records, names))


@dataclass(kw_only=True, eq=False)
class TransportSecurity:
    """Chooses each host's policy (see the module text); one per ``direct`` instance.

    ``ca_file`` (else the system CAs) checks MTA-STS hosts' certificates; ``fallback`` is
    the ``tls`` option's policy for hosts no policy covers.
    """

    resolver: MxResolver
    port: int
    dane: str
    validating: bool
    sts: StsPolicies | None
    ca_file: InitVar[Path | None]
    fallback: TlsPolicy
    sts_tls: TlsPolicy = field(init=False)
    sts_testing_tls: TlsPolicy = field(init=False)
    unauthenticated_tls: TlsPolicy = field(init=False)

    def __post_init__(self, ca_file: Path | None) -> None:
        self.sts_tls = TlsPolicy("required", verify=True, ca_file=ca_file)
        self.sts_testing_tls = TlsPolicy("opportunistic", verify=False,
                                         check=WebPkiCheck(str(ca_file) if ca_file else None))
        self.unauthenticated_tls = TlsPolicy("required", verify=False)

    async def plan(self, domain: str, mx: MxPlan, *, store: bool = True) -> SecurityPlan:
        """Each host of ``mx`` with its policy; ``store=False`` (a dry run) leaves the MTA-STS cache alone."""
        sts_lookup, tlsa = await asyncio.gather(self._sts(domain, store), self._tlsa(mx))
        policy = sts_lookup.policy if sts_lookup is not None else None
        active = policy if policy is not None and policy.mode != "none" else None
        plan = SecurityPlan(domain, [], self._facts(domain, mx, sts_lookup))
        if sts_lookup is not None and sts_lookup.failure and active is None:
            plan.failures.append((NO_POLICY, sts_lookup.failure, sts_lookup.note))
        for host in mx.hosts:
            plan.hosts.append(self._host(domain, host, tlsa.get(host.name), active, mx, sts_lookup))
        return plan

    # -- per host ---------------------------------------------------------------------------------

    def _host(self, domain: str, host: MxHost, tlsa: TlsaLookup | None, sts: StsPolicy | None, mx: MxPlan,
              sts_lookup: StsLookup | None) -> HostSecurity:
        if tlsa is not None and tlsa.state in ("dane", "unusable", "failed"):
            report = ReportPolicy("tlsa", tuple(r.presentation() for r in tlsa.records), (host.name,))
            over = "; DANE takes precedence over the MTA-STS policy" if sts is not None else ""
            if tlsa.state == "dane":
                return HostSecurity(host, "dane", dane_tls(tlsa.usable, (host.name, domain)), tlsa.reason + over,
                                    report=report)
            if tlsa.state == "unusable":
                return HostSecurity(host, "dane", self.unauthenticated_tls,
                                    f"{tlsa.reason}: TLS required, certificate not authenticated{over}",
                                    report=report)
            refusal = Reply(451, "4.7.5", f"DANE: {tlsa.reason}; {host.name} not tried")
            return HostSecurity(host, "dane", self.unauthenticated_tls, tlsa.reason, refusal, "dnssec-invalid",
                                report)
        no_dane = self._no_dane(host, tlsa, mx)
        if self.dane == "required":
            refusal = Reply(451, "4.7.5", f"DANE required (dane: required) but {no_dane}; {host.name} not tried")
            return HostSecurity(host, "dane", self.unauthenticated_tls, no_dane, refusal, "dane-required", NO_POLICY)
        if sts is not None:
            report = ReportPolicy("sts", tuple(sts.lines()), sts.mx)
            listed = sts.allows(host.name)
            if sts.mode == "enforce":
                if not listed:
                    refusal = Reply(451, "4.7.5", f"MTA-STS: {host.name} is not an mx of the policy of {domain} "
                                                  f"({', '.join(sts.mx)}); not tried")
                    return HostSecurity(host, "mta-sts", self.sts_tls, "not an mx of the policy", refusal,
                                        "validation-failure", report)
                return HostSecurity(host, "mta-sts", self.sts_tls,
                                    f"MTA-STS enforce, policy id {sts.id}: TLS with a certificate valid for "
                                    f"{host.name}; {no_dane}", report=report)
            why = f"MTA-STS testing, policy id {sts.id}: opportunistic TLS, failures reported; {no_dane}"
            if not listed:
                why += f"; {host.name} is not an mx of the policy"
            return HostSecurity(host, "mta-sts", self.sts_testing_tls, why, report=report, testing=True,
                                failure="" if listed else "validation-failure")
        sts_why = sts_lookup.note if sts_lookup is not None else "mta_sts: false"
        label = self.fallback.mode
        return HostSecurity(host, label, self.fallback, f"tls: {label}; {no_dane}; {sts_why}")

    def _no_dane(self, host: MxHost, tlsa: TlsaLookup | None, mx: MxPlan) -> str:
        if self.dane == "off":
            return "DANE off" + ("" if self.validating else " (dnssec: none)")
        if not mx.secure:
            return f"no DANE: the MX records of {mx.domain} are not DNSSEC-authenticated"
        if not host.secure:
            return f"no DANE: the addresses of {host.name} are not DNSSEC-authenticated"
        return f"no DANE: {tlsa.reason}" if tlsa is not None else "no DANE"

    # -- lookups ----------------------------------------------------------------------------------

    async def _sts(self, domain: str, store: bool) -> StsLookup | None:
        if self.sts is None or domain.startswith("["):
            return None
        return await self.sts.lookup(domain, store=store)

    async def _tlsa(self, mx: MxPlan) -> dict[str, TlsaLookup]:
        if self.dane == "off" or not mx.secure:
            return {}
        hosts = [h for h in mx.hosts if h.secure]
        found = await asyncio.gather(*(lookup_tlsa(self.resolver, h.name, self.port) for h in hosts))
        return {h.name: t for h, t in zip(hosts, found, strict=True)}

    def _facts(self, domain: str, mx: MxPlan, sts: StsLookup | None) -> dict[str, Any]:
        facts: dict[str, Any] = {}
        if self.validating:
            facts["dnssec"] = (f"validating resolver (AD bit trusted); MX records of {domain} "
                               f"{'DNSSEC-authenticated' if mx.secure else 'not authenticated'}")
        else:
            facts["dnssec"] = "none (the resolver is not named as validating: DNSSEC is neither trusted nor checked)"
        facts["dane"] = self.dane
        if sts is None:
            facts["mta-sts"] = "off (mta_sts: false)" if self.sts is None else "not for an address literal"
        elif sts.policy is None:
            facts["mta-sts"] = f"no policy: {sts.note}"
        else:
            p = sts.policy
            facts["mta-sts"] = (f"mode {p.mode}, id {p.id}, mx {', '.join(p.mx) or '-'}, max_age {p.max_age}s "
                                f"({sts.note})")
        return facts
