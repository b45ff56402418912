"""Verifying a server's certificate chain outside the handshake (DANE-TA, MTA-STS in ``testing`` mode).

Python's ``ssl`` verifies only during the handshake and only against anchors known
beforehand. DANE-TA (RFC 7672) learns its trust anchor from the TLSA records matched
against the presented chain, and a report-only MTA-STS check must not end the session.
Both verify here with ``cryptography``'s X.509 path validation: signatures, validity
dates, CA constraints and the name. Leaf-certificate extensions other than the
subjectAltName are not held to the CA/Browser Forum profile (mail servers' certificates
often are not), as OpenSSL does not hold them either.
"""

from __future__ import annotations

import datetime
import functools
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.verification import Criticality, ExtensionPolicy, PolicyBuilder, Store, VerificationError

from mailpipe.plugins.outbound.tls import Verdict

_LEAF_POLICY = ExtensionPolicy.permit_all().require_present(x509.SubjectAlternativeName, Criticality.AGNOSTIC, None)


def load(der: bytes) -> x509.Certificate:
    """A DER certificate as ``cryptography`` sees it (``ValueError`` when it cannot be read)."""
    return x509.load_der_x509_certificate(der)


def spki(cert: x509.Certificate) -> bytes:
    """The certificate's SubjectPublicKeyInfo, DER (what TLSA selector 1 hashes)."""
    return cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def describe(cert: x509.Certificate) -> str:
    """``CN=mx.example`` or the whole subject, for texts."""
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return f"CN={names[0].value}" if names else (cert.subject.rfc4514_string() or "(empty subject)")


def time_problem(cert: x509.Certificate, now: datetime.datetime | None = None) -> str | None:
    """``expired on ...`` / ``not valid before ...`` when ``cert`` is outside its validity period, else None."""
    now = now or datetime.datetime.now(datetime.UTC)
    if cert.not_valid_after_utc < now:
        return f"{describe(cert)} expired on {cert.not_valid_after_utc:%Y-%m-%d}"
    if cert.not_valid_before_utc > now:
        return f"{describe(cert)} is not valid before {cert.not_valid_before_utc:%Y-%m-%d}"
    return None


def verify(chain: Sequence[x509.Certificate], anchors: Sequence[x509.Certificate], names: Sequence[str]) -> str:
    """Check that ``chain[0]`` leads to one of ``anchors`` (through ``chain[1:]``) and names one of ``names``.

    Returns the name that matched; raises ``ChainProblem`` with an RFC 8460 result type.
    """
    if not chain:
        raise ChainProblem("the server presented no certificate", "certificate-not-trusted")
    leaf = chain[0]
    expired = next((p for p in map(time_problem, chain) if p), None)
    store = Store(list(anchors))
    last: VerificationError | None = None
    for name in names:
        builder = PolicyBuilder().store(store).extension_policies(
            ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=_LEAF_POLICY)
        try:
            builder.build_server_verifier(x509.DNSName(name)).verify(leaf, list(chain[1:]))
            return name
        except VerificationError as exc:
            last = exc
        except ValueError as exc:  # a name cryptography cannot take as a DNS name
            last = VerificationError(str(exc))
    text = str(last) if last else "no name to check"
    if expired:
        raise ChainProblem(expired, "certificate-expired")
    if "subjectAltName" in text:
        raise ChainProblem(f"{describe(leaf)} is not valid for {' or '.join(names)}", "certificate-host-mismatch")
    raise ChainProblem(f"{describe(leaf)}: {text.split(' (encountered')[0]}", "certificate-not-trusted")


class ChainProblem(Exception):
    """A chain that does not verify; ``result_type`` is the RFC 8460 word for it."""

    def __init__(self, text: str, result_type: str) -> None:
        super().__init__(text)
        self.result_type = result_type


@functools.lru_cache(maxsize=8)
def trust_anchors(ca_file: str | None) -> tuple[x509.Certificate, ...]:
    """The CA certificates of ``ca_file`` (PEM), or the system's when None; read once per file."""
    if ca_file is None:
        paths = ssl.get_default_verify_paths()
        candidates = [paths.cafile, paths.openssl_cafile, "/etc/ssl/certs/ca-certificates.crt"]
        ca_file = next((c for c in candidates if c and Path(c).is_file()), None)
        if ca_file is None:
            return ()
    return tuple(x509.load_pem_x509_certificates(Path(ca_file).read_bytes()))


@dataclass(frozen=True)
class WebPkiCheck:
    """A report-only ``PeerCheck`` (MTA-STS ``testing``): would the chain pass WebPKI validation?

    Trusts ``ca_file`` (else the system CAs) and wants the name the session was opened
    for (the MX host) in the leaf's subjectAltName. Under opportunistic TLS its verdict
    is only recorded, never enforced.
    """

    ca_file: str | None = None

    def __call__(self, chain: list[bytes], server_name: str) -> Verdict:
        """Called by the outbound client after the STARTTLS handshake."""
        try:
            parsed = [load(der) for der in chain]
            name = verify(parsed, trust_anchors(self.ca_file), [server_name])
        except ChainProblem as exc:
            return Verdict(False, str(exc), exc.result_type)
        except (ValueError, OSError) as exc:
            return Verdict(False, f"cannot verify: {exc}", "validation-failure")
        return Verdict(True, f"certificate valid for {name} (CA chain and name)")
