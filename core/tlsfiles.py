"""TLS contexts: servers from certificate and key files (the intake's listeners) and every client's context."""

from __future__ import annotations

import ssl
from pathlib import Path

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


def client_tls_context(*, verify: bool = True, ca_file: Path | str | None = None) -> ssl.SSLContext:
    """A TLS 1.2+ client context; ``verify=False`` checks neither chain nor name.

    The chain is checked against ``ca_file`` when given, else the system CAs. Used by the
    core's POP3 client (collection, POP-before-SMTP) and by plugins: outbound SMTP's ``TlsPolicy``
    (``verify=False`` for opportunistic TLS), direct's MTA-STS fetches, OAuth2's token endpoint.
    """
    ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx
