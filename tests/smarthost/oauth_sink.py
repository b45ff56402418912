"""An SMTP server that offers AUTH XOAUTH2 (aiosmtpd with a handler mechanism), for the xoauth2 tests.

Postfix/Dovecot here cannot check OAuth tokens; aiosmtpd lets a handler add a
SASL mechanism, so this is a real SMTP server speaking XOAUTH2 the way Gmail
and Outlook do: the client sends ``user=U^Aauth=Bearer T^A^A`` in base64;
a bad token gets a 334 with a base64 JSON error, then 535 after the client's
empty line.
"""

from __future__ import annotations

import base64
import json
import ssl

from aiosmtpd.smtp import AuthResult

from tests.peers.certs import TestPKI
from tests.peers.sink import RecordingSink, _Handler


class _OAuthHandler(_Handler):
    def __init__(self, sink: RecordingSink, tokens: dict[str, str]) -> None:
        super().__init__(sink)
        self.tokens = tokens
        self.attempts: list[tuple[str, str]] = []

    async def auth_XOAUTH2(self, server, args):  # noqa: ANN001, ANN201 - aiosmtpd handler mechanism
        if len(args) < 2:
            return AuthResult(success=False, handled=False, message="501 5.5.2 initial response required")
        fields = dict(
            part.split("=", 1) for part in base64.b64decode(args[1]).decode().split("\x01") if "=" in part
        )
        user, token = fields.get("user", ""), fields.get("auth", "").removeprefix("Bearer ")
        self.attempts.append((user, token))
        if self.tokens.get(user) == token:
            return AuthResult(success=True, auth_data=user)
        error = base64.b64encode(json.dumps({"status": "401", "schemes": "Bearer"}).encode()).decode()
        await server.challenge_auth(error, encode_to_b64=False)
        return AuthResult(success=False, handled=False, message="535 5.7.8 Username and Password not accepted")


class OAuthSink(RecordingSink):
    """A RecordingSink with STARTTLS (certificate from ``pki``) offering only AUTH XOAUTH2."""

    def __init__(self, host: str, pki: TestPKI, tokens: dict[str, str]) -> None:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(pki.cert_file, pki.key_file)
        super().__init__(host, auth={}, auth_require_tls=True, tls_context=ctx,
                         server_kwargs={"auth_exclude_mechanism": ["LOGIN", "PLAIN"]})
        self.oauth = _OAuthHandler(self, tokens)
        self.controller.handler = self.oauth
