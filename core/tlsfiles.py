"""Server TLS contexts from certificate and key files (the intake's listeners)."""

from __future__ import annotations

import ssl

from .errors import ConfigError
from .settings import ListenSpec


def server_tls_context(spec: ListenSpec) -> ssl.SSLContext:
    """A server TLS context from the listener's cert and key (TLS 1.2 or newer); ConfigError if unusable."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(spec.cert), str(spec.key))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"listen {spec.address}: cannot load cert {spec.cert} / key {spec.key}: {exc}") from exc
    return ctx
