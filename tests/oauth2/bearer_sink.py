"""A smarthost (aiosmtpd) that checks XOAUTH2 bearer tokens against the test token endpoint.

Like Microsoft 365 and Gmail: the client sends ``user=U^Aauth=Bearer T^A^A``; the token must be
live at the ``TokenServer`` and issued to a subject that may send as ``U`` (``mailboxes``:
login -> the subject its tokens must name: the client id for app-only tokens, the user for
delegated ones). A refused token gets a 334 with a base64 JSON error, the client's empty
line, then ``535 5.7.3``. ``basic_auth: "disabled"`` makes PLAIN and LOGIN answer
``550 5.7.30 Basic authentication is not supported for Client Submission`` (Microsoft's reply).
"""

from __future__ import annotations

import base64
import json
import ssl
from typing import Any

from aiosmtpd.smtp import AuthResult

from tests.peers.certs import TestPKI
from tests.peers.sink import RecordingSink, _Handler
from tests.peers.token_server import TokenServer

BASIC_DISABLED = "550 5.7.30 Basic authentication is not supported for Client Submission."


class _BearerHandler(_Handler):
    def __init__(self, sink: BearerSink) -> None:
        super().__init__(sink)
        self.bearer = sink

    async def auth_XOAUTH2(self, server, args):  # noqa: ANN001, ANN201 - aiosmtpd handler mechanism
        sink = self.bearer
        if len(args) < 2:
            return AuthResult(success=False, handled=False, message="501 5.5.2 initial response required")
        fields = dict(part.split("=", 1) for part in base64.b64decode(args[1]).decode().split("\x01") if "=" in part)
        user, token = fields.get("user", ""), fields.get("auth", "").removeprefix("Bearer ")
        issued = sink.tokens.valid(token)
        ok = issued is not None and sink.mailboxes.get(user) == issued.subject
        with sink._cond:
            sink.attempts.append((user, token, ok))
        if ok:
            return AuthResult(success=True, auth_data=user)
        error = base64.b64encode(json.dumps({"status": "401", "schemes": "bearer"}).encode()).decode()
        await server.challenge_auth(error, encode_to_b64=False)
        return AuthResult(success=False, handled=False, message="535 5.7.3 Authentication unsuccessful")


class BearerSink(RecordingSink):
    """A RecordingSink with STARTTLS (certificate from ``pki``) that checks bearer tokens with ``tokens``."""

    def __init__(self, host: str, pki: TestPKI, tokens: TokenServer, mailboxes: dict[str, str], *,
                 basic_auth: str = "off") -> None:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(pki.cert_file, pki.key_file)
        exclude = ["LOGIN", "PLAIN"] if basic_auth == "off" else []
        super().__init__(host, auth_require_tls=True, tls_context=ctx, authenticator=self._basic,
                         server_kwargs={"auth_exclude_mechanism": exclude})
        self.tokens = tokens
        self.mailboxes = mailboxes
        self.attempts: list[tuple[str, str, bool]] = []
        self.controller.handler = _BearerHandler(self)

    @staticmethod
    def _basic(*_args: Any) -> AuthResult:
        return AuthResult(success=False, handled=False, message=BASIC_DISABLED)

    def logins(self, ok: bool | None = None) -> int:
        """XOAUTH2 attempts seen (only accepted or refused ones with ``ok``)."""
        with self._cond:
            return sum(1 for a in self.attempts if ok is None or a[2] == ok)
