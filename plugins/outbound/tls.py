"""Client TLS: a policy per destination (none, opportunistic, required, implicit) and its SSL context."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

TlsMode = Literal["none", "opportunistic", "required", "implicit"]


def client_context(*, verify: bool = True, ca_file: Path | str | None = None) -> ssl.SSLContext:
    """A TLS 1.2+ client context; ``verify=False`` checks neither chain nor name (opportunistic TLS)."""
    ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


@dataclass(frozen=True)
class TlsPolicy:
    """How a session uses TLS, given by the delivery plugin that opens it.

    ``mode``: ``none`` never starts TLS; ``opportunistic`` uses STARTTLS when
    offered and, when the handshake fails, tries the host once more in plain
    text (Postfix's ``may``); ``required`` refuses a host without STARTTLS or
    whose handshake fails; ``implicit`` speaks TLS from the first byte (port
    465). ``verify``: check the certificate chain (against ``ca_file``, else the
    system CAs) and the name ``server_name`` (default: the host connected to).
    The context is made once, when the policy is made, so a bad ``ca_file`` is
    found at start.
    """

    mode: TlsMode = "none"
    verify: bool = True
    ca_file: Path | None = None
    server_name: str | None = None
    context: ssl.SSLContext | None = field(default=None, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.mode != "none":
            object.__setattr__(self, "context", client_context(verify=self.verify, ca_file=self.ca_file))
