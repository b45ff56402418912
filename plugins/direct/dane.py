"""DANE for SMTP (RFC 7672): an MX host's TLSA records, and matching the server's chain against them.

``lookup_tlsa`` asks for ``_PORT._tcp.HOST`` TLSA (port 25 in production) only for a host
whose MX records and addresses were DNSSEC-authenticated, and tells apart:

==================================================  =========================================
authenticated records, some usable                  ``dane``: TLS required, the chain must match
authenticated records, none usable                  ``unusable``: TLS required, not authenticated
authenticated denial (NXDOMAIN, no TLSA)            ``none``: other policies apply
an answer without the AD bit                        ``insecure``: other policies apply
lookup failed (SERVFAIL, i.e. bogus; timeout)       ``failed``: the host is not tried (4.7.5)
==================================================  =========================================

Usable records: usage DANE-TA(2) or DANE-EE(3); selector Cert(0) or SPKI(1); matching
Full(0), SHA2-256(1) or SHA2-512(2). PKIX-TA(0)/PKIX-EE(1) are unusable for SMTP.
DANE-EE matches the server's own certificate or key; its name and dates are not
checked (RFC 7672 3.1.1). DANE-TA matches a CA certificate the server presented; the
chain from the leaf to it must then verify, with the MX host name (or the recipient
domain) in the leaf's subjectAltName.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import dns.exception
import dns.resolver

from mailpipe.plugins.outbound.tls import Verdict

from . import certs, dnsfail
from .mx import MxResolver

USAGES = {2: "DANE-TA(2)", 3: "DANE-EE(3)"}
_DIGESTS = {1: hashlib.sha256, 2: hashlib.sha512}


@dataclass(frozen=True)
class Tlsa:
    """One TLSA record: certificate usage, selector, matching type and data."""

    usage: int
    selector: int
    mtype: int
    data: bytes

    @property
    def usable(self) -> bool:
        """Whether SMTP may use it (RFC 7672 3.1: DANE-TA or DANE-EE, known selector and matching type)."""
        return self.usage in USAGES and self.selector in (0, 1) and self.mtype in (0, 1, 2)

    def matches(self, cert: certs.x509.Certificate, der: bytes) -> bool:
        """Whether ``cert`` (also given as ``der``) is what this record describes."""
        content = der if self.selector == 0 else certs.spki(cert)
        if self.mtype == 0:
            return content == self.data
        return _DIGESTS[self.mtype](content).digest() == self.data

    def __str__(self) -> str:
        data = self.data.hex()
        return f"{self.usage} {self.selector} {self.mtype} {data if len(data) <= 16 else data[:16] + '...'}"

    def presentation(self) -> str:
        """The whole record as in a zone file (for TLS reports' policy strings)."""
        return f"{self.usage} {self.selector} {self.mtype} {self.data.hex()}"


@dataclass(frozen=True)
class DaneCheck:
    """The ``PeerCheck`` of a DANE host: the chain must match one of ``records`` (see the module text).

    ``names`` are the reference identifiers DANE-TA checks (the MX host name, then the
    recipient domain). Compares by value, so sessions with the same records are pooled together.
    """

    records: tuple[Tlsa, ...]
    names: tuple[str, ...]

    def __call__(self, chain: list[bytes], server_name: str) -> Verdict:
        """Called by the outbound client after the STARTTLS handshake."""
        try:
            parsed = [certs.load(der) for der in chain]
        except ValueError as exc:
            return Verdict(False, f"DANE: unreadable certificate: {exc}", "validation-failure")
        if not parsed:
            return Verdict(False, "DANE: the server presented no certificate", "tlsa-invalid")
        leaf, leaf_der = parsed[0], chain[0]
        for rec in self.records:
            if rec.usage == 3 and rec.matches(leaf, leaf_der):
                return Verdict(True, f"DANE-EE(3) {rec} matched the server's certificate")
        problem: certs.ChainProblem | None = None
        for rec in self.records:
            if rec.usage != 2:
                continue
            for depth in range(1, len(parsed)):
                if not rec.matches(parsed[depth], chain[depth]):
                    continue
                try:
                    name = certs.verify(parsed[: depth + 1], [parsed[depth]], self.names)
                except certs.ChainProblem as exc:
                    problem = exc
                    continue
                return Verdict(True, f"DANE-TA(2) {rec} matched {certs.describe(parsed[depth])}; "
                                     f"chain and name {name} verified")
        if problem is not None:
            return Verdict(False, f"DANE-TA: {problem}", problem.result_type)
        return Verdict(False, f"DANE: no TLSA record matched {certs.describe(leaf)} or its chain "
                              f"({', '.join(str(r) for r in self.records)})", "tlsa-invalid")


@dataclass(frozen=True)
class TlsaLookup:
    """What the TLSA lookup of one host found: ``state`` (see the module text), the records and why."""

    state: str
    name: str
    records: tuple[Tlsa, ...] = ()
    reason: str = ""

    @property
    def usable(self) -> tuple[Tlsa, ...]:
        return tuple(r for r in self.records if r.usable)


async def lookup_tlsa(resolver: MxResolver, host: str, port: int) -> TlsaLookup:
    """The TLSA records of ``host`` for ``port``, trusted only with the AD bit (called per MX host)."""
    name = f"_{port}._tcp.{host}"
    try:
        answer = await resolver.query(name, "TLSA")
    except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN) as exc:
        if resolver.secure(exc):
            return TlsaLookup("none", name, reason=f"no TLSA records at {name} (DNSSEC-authenticated denial)")
        return TlsaLookup("insecure", name, reason=f"no TLSA records at {name} (denial not authenticated)")
    except (dns.exception.DNSException, ValueError) as exc:
        failure = dnsfail.classify(exc, host, "TLSA")
        return TlsaLookup("failed", name, reason=failure.reply.text)
    records = tuple(Tlsa(r.usage, r.selector, r.mtype, bytes(r.cert)) for r in answer)
    if not resolver.secure(answer):
        return TlsaLookup("insecure", name, records, f"TLSA records at {name} not DNSSEC-authenticated: ignored")
    if not any(r.usable for r in records):
        return TlsaLookup("unusable", name, records, f"no usable TLSA record at {name} ({len(records)} unusable)")
    return TlsaLookup("dane", name, records, f"{len(records)} DNSSEC-authenticated TLSA record(s) at {name}")
