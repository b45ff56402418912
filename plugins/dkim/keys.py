"""DKIM keys: reading a key file, how strong it is, its DNS record; a key ring that rereads changed files.

Key files are PEM (PKCS#8 ``PRIVATE KEY`` as ``pipeline dkim keygen`` writes it, or PKCS#1
``RSA PRIVATE KEY`` as ``opendkim-genkey`` writes it); an Ed25519 key may also be the base64 seed
dkimpy's ``dknewkey`` writes. dkimpy wants PKCS#1 PEM for RSA and the base64 seed for Ed25519:
``load_key`` converts.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from .options import KeySpec

#: RSA keys shorter than this are refused (RFC 8301: verifiers must not accept keys under 1024 bits).
MIN_RSA_BITS = 1024
#: RSA keys shorter than this are signed with but warned about (RFC 8301 recommends 2048).
GOOD_RSA_BITS = 2048


class KeyProblem(Exception):
    """A key file that cannot be used for signing; the text names the file, never key material."""


@dataclass(frozen=True)
class LoadedKey:
    """A key ready for dkimpy: ``private`` in dkimpy's format, ``public_record`` the DNS TXT value."""

    domain: str
    selector: str
    algorithm: str
    private: bytes = field(repr=False)
    public_record: str
    bits: int | None

    @property
    def name(self) -> str:
        """``SELECTOR._domainkey.DOMAIN``, where the public key is published."""
        return f"{self.selector}._domainkey.{self.domain}"


def public_record(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> str:
    """The DNS TXT value for ``key``: ``v=DKIM1; k=rsa; p=...`` (SubjectPublicKeyInfo) or ``k=ed25519`` (raw)."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode()}"
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"


def parse_private_key(data: bytes, path: Path) -> rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey:
    """The RSA or Ed25519 key in ``data`` (PEM, or an Ed25519 base64 seed); ``KeyProblem`` otherwise."""
    text = data.strip()
    if text.startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(text, password=None)
        except (ValueError, TypeError):
            raise KeyProblem(f"{path} is not an unencrypted PEM private key") from None
        if isinstance(key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
            return key
        raise KeyProblem(f"{path} holds a {type(key).__name__.removesuffix('PrivateKey')} key; "
                         "DKIM signs with RSA or Ed25519")
    try:
        seed = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        seed = b""
    if len(seed) == 32:
        return ed25519.Ed25519PrivateKey.from_private_bytes(seed)
    raise KeyProblem(f"{path} is neither a PEM private key nor an Ed25519 base64 seed")


def load_key(spec: KeySpec, path: Path) -> LoadedKey:
    """Read and check ``spec``'s key file at ``path``; raises ``KeyProblem`` (unreadable, wrong type, too weak)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyProblem(f"{path} cannot be read: {exc.strerror or exc}") from None
    key = parse_private_key(data, path)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        algorithm, bits = "ed25519-sha256", None
        seed = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                 serialization.NoEncryption())
        private = base64.b64encode(seed)
    else:
        algorithm, bits = "rsa-sha256", key.key_size
        if bits < MIN_RSA_BITS:
            raise KeyProblem(f"{path} is a {bits}-bit RSA key: too weak (receivers ignore DKIM keys under "
                             f"{MIN_RSA_BITS} bits, RFC 8301); make a new one with `pipeline dkim keygen`")
        private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                    serialization.NoEncryption())
    if spec.algorithm is not None and spec.algorithm != algorithm:
        raise KeyProblem(f"{path} is an {'Ed25519' if bits is None else 'RSA'} key but algorithm is {spec.algorithm}")
    return LoadedKey(spec.domain, spec.selector, algorithm, private, public_record(key), bits)


def key_warnings(spec: KeySpec, path: Path) -> list[str]:
    """What ``pipeline check`` says about one key: unusable, weak, or readable by others; empty when fine."""
    try:
        loaded = load_key(spec, path)
    except KeyProblem as exc:
        return [f"key {spec.selector}._domainkey.{spec.domain}: {exc}"]
    out = []
    if loaded.bits is not None and loaded.bits < GOOD_RSA_BITS:
        out.append(f"key {loaded.name}: {path} is a {loaded.bits}-bit RSA key; use {GOOD_RSA_BITS} bits or more "
                   "(RFC 8301), e.g. `pipeline dkim keygen`, and rotate")
    try:
        st = path.stat()
        if st.st_mode & 0o077 and st.st_uid == os.geteuid():
            out.append(f"key {loaded.name}: {path} may be read by other users (mode {st.st_mode & 0o777:o}); "
                       "chmod 600 it")
    except OSError:
        pass
    return out


class KeyRing:
    """The configured keys, each read when first needed and read again when its file changes (rotation)."""

    def __init__(self, specs: list[KeySpec], resolve: Callable[[Path], Path]) -> None:
        self.specs = specs
        self.resolve = resolve
        self._cache: dict[tuple[str, str], tuple[tuple[int, int], LoadedKey]] = {}

    def path(self, spec: KeySpec) -> Path:
        """The key file, absolute."""
        return self.resolve(spec.key_file)

    def for_domain(self, domain: str, subdomains: bool) -> list[KeySpec]:
        """The keys that sign mail of ``domain``: its own, else (``subdomains``) the nearest parent's."""
        domain = domain.lower().rstrip(".")
        while domain:
            found = [s for s in self.specs if s.domain == domain]
            if found or not subdomains:
                return found
            domain = domain.partition(".")[2] if "." in domain.partition(".")[2] else ""
        return []

    def load(self, spec: KeySpec) -> LoadedKey:
        """The key of ``spec``, reread when its file's size or time changed; ``KeyProblem`` when unusable."""
        path = self.path(spec)
        try:
            st = path.stat()
        except OSError as exc:
            raise KeyProblem(f"{path} cannot be read: {exc.strerror or exc}") from None
        stamp = (st.st_mtime_ns, st.st_size)
        cached = self._cache.get((spec.domain, spec.selector))
        if cached is not None and cached[0] == stamp:
            return cached[1]
        loaded = load_key(spec, path)
        self._cache[(spec.domain, spec.selector)] = (stamp, loaded)
        return loaded


def generate_key(path: Path, algorithm: str = "rsa-sha256", bits: int = GOOD_RSA_BITS) -> str:
    """Write a new private key to ``path`` (PKCS#8 PEM, mode 0600, refusing to replace a file); its DNS TXT value.

    Called by ``pipeline dkim keygen`` (through ``DkimPlugin.keygen``). ``algorithm``:
    ``rsa-sha256`` (``bits``, at least 2048) or ``ed25519-sha256``.
    """
    key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    if algorithm == "ed25519-sha256":
        key = ed25519.Ed25519PrivateKey.generate()
    elif algorithm == "rsa-sha256":
        if bits < GOOD_RSA_BITS:
            raise ValueError(f"RSA keys of fewer than {GOOD_RSA_BITS} bits are too weak (RFC 8301)")
        key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    else:
        raise ValueError(f"unknown algorithm {algorithm!r} (rsa-sha256 or ed25519-sha256)")
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        os.fchmod(fh.fileno(), 0o600)
        fh.write(pem)
    return public_record(key)


def zone_line(domain: str, selector: str, record: str) -> str:
    """The TXT record as a zone file line, split into strings of at most 255 characters (RFC 1035)."""
    parts = [record[i:i + 255] for i in range(0, len(record), 255)]
    quoted = " ".join(f'"{p}"' for p in parts)
    return f"{selector}._domainkey.{domain}. 3600 IN TXT ( {quoted} )"
