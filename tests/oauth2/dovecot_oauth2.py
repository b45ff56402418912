"""A private Dovecot whose POP3 takes AUTH XOAUTH2, checking each token at the test endpoint (RFC 7662).

Dovecot's ``oauth2`` passdb posts the bearer token to the token server's introspection URL and
lets the login in when the token is live and its ``username`` is the login name. Password users
(``users``) still log in as with ``DovecotPeer``.
"""

from __future__ import annotations

from pathlib import Path

from tests.peers.certs import TestPKI
from tests.peers.dovecot import DovecotPeer
from tests.peers.token_server import TokenServer


class OAuth2Dovecot(DovecotPeer):
    """``DovecotPeer`` plus XOAUTH2/OAUTHBEARER against ``tokens``' introspection endpoint."""

    def __init__(self, workdir: Path, pki: TestPKI, tokens: TokenServer, users: dict[str, str] | None = None,
                 **kwargs: object) -> None:
        super().__init__(workdir, pki, users or {}, **kwargs)  # type: ignore[arg-type]
        self.tokens = tokens
        self.oauth2_file = self.workdir / "dovecot-oauth2.conf.ext"

    def _write_config(self) -> None:
        super()._write_config()
        self.oauth2_file.write_text(
            f"introspection_mode = post\n"
            f"introspection_url = {self.tokens.introspection_url}\n"
            f"tls_ca_cert_file = {self.pki.ca_file}\n"
            "force_introspection = yes\n"
            "username_attribute = username\n"
            "active_attribute = active\n"
            "active_value = true\n"
        )
        self.oauth2_file.chmod(0o644)
        text = self.config_file.read_text()
        text = text.replace("auth_mechanisms = plain login cram-md5 apop",
                            "auth_mechanisms = plain login cram-md5 apop xoauth2 oauthbearer")
        text += (f"\npassdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n"
                 f"  args = {self.oauth2_file}\n}}\n")
        self.config_file.write_text(text)
