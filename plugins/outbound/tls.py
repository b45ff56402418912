"""Client TLS: a policy per destination (none, opportunistic, required, implicit) and its SSL context.

The context itself is the core's (``mailpipe.core.tlsfiles.client_tls_context``), shared with POP3.

A policy may carry a ``check``: a verification of the peer's certificate chain made after the
handshake by the plugin that opened the session (DANE's TLSA matching, a report-only WebPKI
check). The client stays generic: it hands the chain over and honours the ``Verdict``.
"""

from __future__ import annotations

import _ssl
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from mailpipe.core.tlsfiles import client_tls_context

TlsMode = Literal["none", "opportunistic", "required", "implicit"]


@dataclass(frozen=True)
class Verdict:
    """What a ``check`` found about a peer's certificate chain.

    ``trusted``: the chain satisfies the check; ``text`` says what matched or what did not
    (shown in the attempt's text); ``failure`` is a short word for an untrusted chain
    (e.g. RFC 8460's ``certificate-expired``, ``tlsa-invalid``), for reports and metrics.
    """

    trusted: bool
    text: str
    failure: str = ""


#: Verifies a peer: gets the chain the server presented (DER, leaf first) and the name the
#: session was opened for; returns a ``Verdict`` (it must not raise).
PeerCheck = Callable[[list[bytes], str], Verdict]


def peer_chain(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> list[bytes]:
    """The certificates the server presented (DER, leaf first), whether or not they were verified."""
    chain = getattr(ssl_object, "get_unverified_chain", None)  # Python 3.13+
    if chain is None:  # Python 3.10-3.12: the same call on the C object
        chain = getattr(getattr(ssl_object, "_sslobj", None), "get_unverified_chain", None)
    if chain is not None:
        return [c if isinstance(c, bytes) else c.public_bytes(_ssl.ENCODING_DER) for c in chain() or []]
    leaf = ssl_object.getpeercert(binary_form=True)
    return [leaf] if leaf else []


@dataclass(frozen=True)
class TlsPolicy:
    """How a session uses TLS, given by the delivery plugin that opens it.

    ``mode``: ``none`` never starts TLS; ``opportunistic`` uses STARTTLS when
    offered and, when the handshake fails, tries the host once more in plain
    text (Postfix's ``may``); ``required`` refuses a host without STARTTLS or
    whose handshake fails; ``implicit`` speaks TLS from the first byte (port
    465). ``verify``: check the certificate chain (against ``ca_file``, else the
    system CAs) and the name ``server_name`` (default: the host connected to).
    ``check``: called after the handshake with the presented chain; under
    ``required`` and ``implicit`` an untrusted ``Verdict`` ends the session
    (4.7.5, the next host is tried), under ``opportunistic`` it is only recorded
    on the session. Policies that compare equal share pooled sessions, so a
    ``check`` should compare by what it checks (a frozen dataclass, say).
    The context is made once, when the policy is made, so a bad ``ca_file`` is
    found at start.
    """

    mode: TlsMode = "none"
    verify: bool = True
    ca_file: Path | None = None
    server_name: str | None = None
    check: PeerCheck | None = None
    context: ssl.SSLContext | None = field(default=None, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.mode != "none":
            object.__setattr__(self, "context", client_tls_context(verify=self.verify, ca_file=self.ca_file))
