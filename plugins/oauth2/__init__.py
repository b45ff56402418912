"""OAuth2 access tokens fetched by mailpipe itself, for XOAUTH2 logins (SMTP and POP3).

Not a chain plugin: a small package the smarthost plugin uses. ``TokenProvider`` fetches
tokens from a token endpoint (RFC 6749 client credentials, section 4.4, or refresh token,
section 6), caches each until shortly before it expires, fetches one at a time however
many connections ask, and writes a rotated refresh token back to its file. ``assertion``
makes the signed JWT a certificate-holding client proves itself with (RFC 7523).
Nothing here puts a secret or a token into an exception, a log line or an event.
"""

from __future__ import annotations

from .provider import Token, TokenError, TokenProvider

__all__ = ["Token", "TokenError", "TokenProvider"]
