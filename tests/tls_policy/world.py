"""The test world of the transport-security tests: certificates, MX hosts, signed zones, policy server.

Certificates (trustme): ``good`` (the test CA, valid for every MX host name), ``other``
(another CA, untrusted; its key is what a "mismatching" TLSA record names), ``expired``
(the test CA, every MX name, expired last year), ``wrongname`` (the test CA, a name no MX
has). The test CA is the ``ca_file`` of the gateway; ``https`` is the policy server's
certificate (the test CA, every ``mta-sts.*`` name used).

MX hosts live in the signed zone ``hosts.test``, each on its own loopback address, all on
one port (``mx_port``), with TLSA records at ``_PORT._tcp.HOST``:

====  ============  ======================================  ==============================
host  address       TLSA                                    server presents
====  ============  ======================================  ==============================
a     127.0.1.31    3 1 1 sha256(good key)                  good
b     127.0.1.32    3 1 1 sha256(other key): mismatch       good
c     127.0.1.33    2 0 1 sha256(test CA certificate)       good + CA (chain)
d     127.0.1.34    3 1 1 sha256(expired key)               expired
f     127.0.1.35    3 1 1 good, tampered after signing      good
n     127.0.1.36    none (authenticated denial)             good
s     127.0.1.37    3 1 1 good                              attacker relay stripping STARTTLS
x     127.0.1.39    3 1 0 full good key                     good
y     127.0.1.40    2 1 2 sha512(test CA key)               good + CA (chain)
z     127.0.1.41    1 1 1 (PKIX-EE: unusable for SMTP)      good
w     127.0.1.42    2 0 1 sha256(test CA certificate)       wrongname + CA (chain)
o     127.0.1.43    none                                    other (an untrusted CA)
====  ============  ======================================  ==============================

The real server behind the relay of ``s`` listens on 127.0.1.38. Recipient domains are
names in ``secure.test`` (signed), ``insecure.test`` (unsigned, no DS) and ``bogus.test``
(signed, wrong DS in the parent).
"""

from __future__ import annotations

import datetime
import hashlib
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.peers.dnssec import Zone

HOSTS = {"a": "127.0.1.31", "b": "127.0.1.32", "c": "127.0.1.33", "d": "127.0.1.34", "f": "127.0.1.35",
         "n": "127.0.1.36", "s": "127.0.1.37", "x": "127.0.1.39", "y": "127.0.1.40", "z": "127.0.1.41",
         "w": "127.0.1.42", "o": "127.0.1.43"}
RELAYED = "127.0.1.38"  # the real server behind the STARTTLS-stripping relay of host s
HTTPS_ADDRESS = "127.0.1.50"  # every mta-sts.DOMAIN resolves here
MX_ADDRESSES = (*HOSTS.values(), RELAYED)
MX_NAMES = tuple(f"{h}.hosts.test" for h in HOSTS)


def mx(host: str) -> str:
    """``a`` -> ``a.hosts.test``."""
    return f"{host}.hosts.test"


@dataclass(frozen=True)
class CertFiles:
    """A server certificate: its chain file (leaf first), key file, and the leaf as cryptography sees it."""

    chain_file: Path
    key_file: Path
    leaf: x509.Certificate

    def context(self) -> ssl.SSLContext:
        """A server context presenting this certificate (for a RecordingSink's STARTTLS)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(self.chain_file), str(self.key_file))
        return ctx


def spki(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


class Pki:
    """The test CA, the untrusted CA, and the server certificates of the module text, written to ``directory``."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        os.chmod(directory, 0o755)
        self.directory = directory
        self.ca = trustme.CA()
        self.other_ca = trustme.CA()
        self.ca_file = directory / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        self.ca_cert = x509.load_pem_x509_certificate(self.ca.cert_pem.bytes())
        past = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
        self.good = self._write("good", self.ca.issue_cert(*MX_NAMES), chain=True)
        self.other = self._write("other", self.other_ca.issue_cert(*MX_NAMES))
        self.expired = self._write("expired", self.ca.issue_cert(
            *MX_NAMES, not_before=past - datetime.timedelta(days=30), not_after=past))
        self.wrongname = self._write("wrongname", self.ca.issue_cert("wrong.invalid"), chain=True)
        self.https_names: list[str] = []

    def _write(self, name: str, cert: trustme.LeafCert, *, chain: bool = False) -> CertFiles:
        chain_file, key_file = self.directory / f"{name}.pem", self.directory / f"{name}.key"
        pems = [p.bytes() for p in cert.cert_chain_pems]
        if chain:
            pems.append(self.ca.cert_pem.bytes())  # DANE-TA needs the anchor in the presented chain
        chain_file.write_bytes(b"".join(pems))
        cert.private_key_pem.write_to_path(str(key_file))
        leaf = x509.load_pem_x509_certificate(pems[0])
        return CertFiles(chain_file, key_file, leaf)

    def https_cert(self, domains: list[str]) -> CertFiles:
        """The policy server's certificate, valid for ``mta-sts.DOMAIN`` of each domain."""
        return self._write("https", self.ca.issue_cert(*(f"mta-sts.{d}" for d in domains)))

    # -- TLSA data --------------------------------------------------------------------------------

    def tlsa_3_1_1(self, files: CertFiles) -> str:
        return f"3 1 1 {hashlib.sha256(spki(files.leaf)).hexdigest()}"

    def tlsa_3_1_0(self, files: CertFiles) -> str:
        return f"3 1 0 {spki(files.leaf).hex()}"

    def tlsa_2_0_1(self) -> str:
        return f"2 0 1 {hashlib.sha256(self.ca_cert.public_bytes(Encoding.DER)).hexdigest()}"

    def tlsa_2_1_2(self) -> str:
        return f"2 1 2 {hashlib.sha512(spki(self.ca_cert)).hexdigest()}"


def server_certs(pki: Pki) -> dict[str, CertFiles]:
    """What each MX host (and the relayed server) presents."""
    certs = {h: pki.good for h in HOSTS}
    certs.update(d=pki.expired, w=pki.wrongname, o=pki.other)
    return certs


def zones(pki: Pki, port: int, *, sts_domains: dict[str, str] | None = None,
          rua: dict[str, str] | None = None) -> list[Zone]:
    """The zones of the module text, TLSA records for ``port``.

    ``sts_domains`` maps a name in ``secure.test`` to its ``_mta-sts`` TXT id; ``rua`` a
    name to the ``rua=`` of its ``_smtp._tls`` TXT record.
    """
    t = f"_{port}._tcp"
    good = pki.tlsa_3_1_1(pki.good)
    hosts = [f"{h} A {a}" for h, a in HOSTS.items()] + [
        f"{t}.a TLSA {good}",
        f"{t}.b TLSA {pki.tlsa_3_1_1(pki.other)}",
        f"{t}.c TLSA {pki.tlsa_2_0_1()}",
        f"{t}.d TLSA {pki.tlsa_3_1_1(pki.expired)}",
        f"{t}.f TLSA {good}",
        f"{t}.s TLSA {good}",
        f"{t}.x TLSA {pki.tlsa_3_1_0(pki.good)}",
        f"{t}.y TLSA {pki.tlsa_2_1_2()}",
        f"{t}.z TLSA 1 1 1 {'00' * 32}",
        f"{t}.w TLSA {pki.tlsa_2_0_1()}",
    ]
    secure = [
        "ok MX 10 a.hosts.test.",
        "fallover MX 10 b.hosts.test.", "fallover MX 20 a.hosts.test.",
        "mismatch MX 10 b.hosts.test.",
        "ta MX 10 c.hosts.test.",
        "expired MX 10 d.hosts.test.",
        "bogus-tlsa MX 10 f.hosts.test.",
        "bogus-then-ok MX 10 f.hosts.test.", "bogus-then-ok MX 20 a.hosts.test.",
        "notlsa MX 10 n.hosts.test.",
        "stripped MX 10 s.hosts.test.",
        "full MX 10 x.hosts.test.",
        "sha512 MX 10 y.hosts.test.",
        "unusable MX 10 z.hosts.test.",
        "wrongname MX 10 w.hosts.test.",
        "to-insecure-host MX 10 mx.insecure.test.",
        "reports MX 10 n.hosts.test.",
        "both MX 10 b.hosts.test.", "both MX 20 a.hosts.test.",
        "stsonly MX 10 n.hosts.test.",
    ]
    for name, ident in (sts_domains or {}).items():
        secure += [f'_mta-sts.{name} TXT "v=STSv1; id={ident}"', f"mta-sts.{name} A {HTTPS_ADDRESS}"]
    for name, where in (rua or {}).items():
        secure.append(f'_smtp._tls.{name} TXT "v=TLSRPTv1; rua={where}"')
    insecure = ["@ MX 10 b.hosts.test.", f"mx A {HOSTS['b']}", f"{t}.mx TLSA {pki.tlsa_3_1_1(pki.other)}"]
    return [
        Zone("hosts.test", hosts, tamper=[(f"{t}.f.hosts.test", "TLSA")]),
        Zone("secure.test", secure),
        Zone("insecure.test", insecure, security="insecure"),
        Zone("bogus.test", ["@ MX 10 a.hosts.test."], security="bogus"),
    ]


#: Every domain the policy server has a certificate for (its name is mta-sts.DOMAIN).
STS_DOMAINS = ["both.secure.test", "stsonly.secure.test", "enforce.sts.test", "testing.sts.test",
               "none.sts.test", "changing.sts.test", "broken.sts.test", "big.sts.test", "nolist.sts.test",
               "enforce-strip.sts.test", "enforce-unlisted.sts.test", "missing.sts.test", "slow.sts.test",
               "nopolicy.sts.test", "flaky.sts.test"]  # not badcert.sts.test: its server's certificate is not for it
