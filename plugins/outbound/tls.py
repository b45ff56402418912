"""Client TLS contexts: verified by default, a CA file option, an explicit opt-out."""

from __future__ import annotations

import ssl
from pathlib import Path


def client_context(*, verify: bool = True, ca_file: Path | str | None = None) -> ssl.SSLContext:
    """A TLS 1.2+ client context; ``verify=False`` checks neither chain nor name (opportunistic TLS)."""
    ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx
