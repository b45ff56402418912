"""An OAuth2 token endpoint over HTTPS, written for the tests (RFC 6749 section 4.4 and section 6).

It speaks the protocol the way Microsoft Entra ID and Google do, strictly:

- ``POST`` with ``application/x-www-form-urlencoded`` only; the reply is JSON with
  ``Cache-Control: no-store``;
- client authentication by ``client_secret`` in the body or HTTP Basic (section 2.3.1), or by
  a JWT client assertion (RFC 7523) signed with the key of a registered certificate, checked
  for signature, ``aud`` (this endpoint), ``iss``/``sub`` (the client), ``exp``, the ``x5t``
  thumbprint and ``jti`` reuse;
- ``client_credentials``: the requested scope must be one the client may have;
- ``refresh_token``: the refresh token must be live for that client; with ``rotate`` each use
  returns a new refresh token and the old one stops working (Microsoft's behaviour);
- errors as section 5.2 says: 400 with ``invalid_request``, ``invalid_grant``,
  ``unsupported_grant_type``, ``invalid_scope``; 401 ``invalid_client``.

Access tokens live ``lifetime`` seconds (real time, the server's clock) and can be revoked;
``valid(token)`` is what the test smarthost asks; ``introspection_url`` (RFC 7662: POST
``token=...``, answer ``{"active": ..., "username": ...}``) is what a Dovecot ``oauth2`` passdb
asks. ``fail_next`` makes the next requests fail (an HTTP status and an OAuth2 error, or a 503
outage). ``requests`` records every token request (never the secrets themselves) so tests can
count fetches.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from .certs import TestPKI
from .net import free_port

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
PATH = "/tenant-test/oauth2/v2.0/token"
INTROSPECTION_PATH = "/tenant-test/oauth2/introspect"


@dataclass
class Client:
    """A registered client: a secret, or a certificate whose key signs assertions; the scopes it may ask for."""

    client_id: str
    secret: str | None = None
    certificate: x509.Certificate | None = None
    scopes: set[str] = field(default_factory=set)


@dataclass
class TokenRequest:
    """One request as the endpoint saw it (secrets left out)."""

    grant_type: str
    client_id: str
    client_auth: str  # "secret_post", "basic", "assertion" or "none"
    scope: str
    status: int
    error: str | None
    at: float


@dataclass
class Issued:
    """An access token the endpoint issued."""

    token: str
    client_id: str
    subject: str
    expires: float
    revoked: bool = False


@dataclass
class Failure:
    status: int
    error: str | None
    description: str


class TokenServer:
    """``with TokenServer(pki) as ts:`` an HTTPS token endpoint at ``ts.url`` (certificate from ``pki``)."""

    def __init__(self, pki: TestPKI, host: str = "127.0.0.1", *, lifetime: int = 3600, rotate: bool = False) -> None:
        self.host = host
        self.port = free_port(host)
        self.pki = pki
        self.lifetime = lifetime
        self.rotate = rotate
        self.clients: dict[str, Client] = {}
        self.refresh_tokens: dict[str, tuple[str, str]] = {}  # refresh token -> (client_id, subject)
        self.issued: dict[str, Issued] = {}
        self.requests: list[TokenRequest] = []
        self.failures: list[Failure] = []
        self.seen_jti: set[str] = set()
        self.lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}{PATH}"

    @property
    def introspection_url(self) -> str:
        return f"https://{self.host}:{self.port}{INTROSPECTION_PATH}"

    def introspect(self, token: str) -> dict[str, Any]:
        """RFC 7662: whether ``token`` is live, and whose it is."""
        issued = self.valid(token)
        if issued is None:
            return {"active": False}
        return {"active": True, "username": issued.subject, "client_id": issued.client_id,
                "exp": int(issued.expires)}

    # -- set-up -----------------------------------------------------------------------------

    def add_client(self, client_id: str, *, secret: str | None = None, cert_file: Path | None = None,
                   scopes: tuple[str, ...] = ("https://outlook.office365.com/.default",)) -> Client:
        """Register a client with a secret or a certificate (PEM file)."""
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes()) if cert_file else None
        client = Client(client_id, secret, cert, set(scopes))
        with self.lock:
            self.clients[client_id] = client
        return client

    def grant(self, client_id: str, subject: str) -> str:
        """A refresh token for ``subject`` (a user's consent), usable by ``client_id``."""
        token = "rt-" + secrets.token_urlsafe(24)
        with self.lock:
            self.refresh_tokens[token] = (client_id, subject)
        return token

    def fail_next(self, status: int, error: str | None = None, description: str = "", count: int = 1) -> None:
        """The next ``count`` requests get ``status`` with ``error`` (None: a non-OAuth2 outage page)."""
        with self.lock:
            self.failures += [Failure(status, error, description)] * count

    def revoke_all(self) -> None:
        """Every access token issued so far stops being valid (what an expiry on the server looks like)."""
        with self.lock:
            for issued in self.issued.values():
                issued.revoked = True

    def valid(self, token: str) -> Issued | None:
        """The issued token ``token`` while it is live, else None."""
        with self.lock:
            issued = self.issued.get(token)
        if issued is None or issued.revoked or time.time() >= issued.expires:
            return None
        return issued

    def count(self, grant_type: str | None = None, ok: bool | None = None) -> int:
        """Requests received (of ``grant_type``; only successful or failed ones with ``ok``)."""
        with self.lock:
            return sum(1 for r in self.requests if (grant_type is None or r.grant_type == grant_type)
                       and (ok is None or (r.status == 200) == ok))

    # -- life ---------------------------------------------------------------------------------

    def __enter__(self) -> TokenServer:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.pki.cert_file, self.pki.key_file)
        server = self

        class Handler(_Handler):
            endpoint = server

        httpd = ThreadingHTTPServer((self.host, self.port), Handler)
        httpd.daemon_threads = True
        httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="token-server", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)

    # -- the protocol -----------------------------------------------------------------------

    def answer(self, form: dict[str, str], authorization: str | None) -> tuple[int, dict[str, Any]]:
        """The reply to one token request: (HTTP status, JSON body)."""
        with self.lock:
            failure = self.failures.pop(0) if self.failures else None
        if failure is not None:
            if failure.error is None:
                return failure.status, {}
            return failure.status, {"error": failure.error, "error_description": failure.description}
        client, how, problem = self._client(form, authorization)
        if problem:
            return 401, {"error": "invalid_client", "error_description": problem}
        assert client is not None
        grant = form.get("grant_type", "")
        if grant == "client_credentials":
            scopes = set(form.get("scope", "").split())
            if not scopes or not scopes <= client.scopes:
                return 400, {"error": "invalid_scope", "error_description": f"scope {form.get('scope')!r} not allowed"}
            return 200, self._issue(client.client_id, client.client_id)
        if grant == "refresh_token":
            presented = form.get("refresh_token", "")
            with self.lock:
                owner = self.refresh_tokens.get(presented)
                if owner is None or owner[0] != client.client_id:
                    return 400, {"error": "invalid_grant",
                                 "error_description": "AADSTS70000: the refresh token is expired or revoked"}
                body = self._issue(client.client_id, owner[1], locked=True)
                if self.rotate:
                    del self.refresh_tokens[presented]
                    new = "rt-" + secrets.token_urlsafe(24)
                    self.refresh_tokens[new] = owner
                    body["refresh_token"] = new
            return 200, body
        if not grant:
            return 400, {"error": "invalid_request", "error_description": "grant_type is missing"}
        return 400, {"error": "unsupported_grant_type", "error_description": f"grant_type {grant!r}"}

    def _client(self, form: dict[str, str], authorization: str | None) -> tuple[Client | None, str, str]:
        """(client, how it authenticated, problem) per RFC 6749 section 2.3 and RFC 7523."""
        client_id, secret, how = form.get("client_id", ""), form.get("client_secret"), "secret_post"
        if authorization and authorization.lower().startswith("basic "):
            decoded = base64.b64decode(authorization[6:]).decode()
            user, _, password = decoded.partition(":")
            client_id, secret, how = urllib.parse.unquote_plus(user), urllib.parse.unquote_plus(password), "basic"
        with self.lock:
            client = self.clients.get(client_id)
        if client is None:
            return None, how, f"AADSTS700016: application {client_id!r} not found"
        if form.get("client_assertion_type") == ASSERTION_TYPE:
            return client, "assertion", self._check_assertion(client, form.get("client_assertion", ""))
        if client.secret is None or secret != client.secret:
            return client, how, "AADSTS7000215: invalid client secret provided"
        return client, how, ""

    def _check_assertion(self, client: Client, assertion: str) -> str:
        if client.certificate is None:
            return "the client has no certificate"
        try:
            header = jwt.get_unverified_header(assertion)
            claims = jwt.decode(assertion, client.certificate.public_key(), algorithms=["RS256", "ES256", "PS256"],
                                audience=self.url, issuer=client.client_id,
                                options={"require": ["exp", "iat", "jti", "sub", "aud", "iss"]})
        except jwt.PyJWTError as exc:
            return f"AADSTS700027: client assertion failed signature validation: {exc}"
        thumb = base64.urlsafe_b64encode(client.certificate.fingerprint(hashes.SHA1())).rstrip(b"=").decode()
        if header.get("x5t") != thumb:
            return "AADSTS700027: the certificate (x5t) is not registered for this application"
        if claims["sub"] != client.client_id:
            return "AADSTS700023: sub is not the client"
        with self.lock:
            if claims["jti"] in self.seen_jti:
                return "AADSTS700024: the assertion was already used (jti)"
            self.seen_jti.add(claims["jti"])
        return ""

    def _issue(self, client_id: str, subject: str, *, locked: bool = False) -> dict[str, Any]:
        token = "at-" + hashlib.sha256(secrets.token_bytes(16)).hexdigest()[:32]
        issued = Issued(token, client_id, subject, time.time() + self.lifetime)
        if locked:
            self.issued[token] = issued
        else:
            with self.lock:
                self.issued[token] = issued
        return {"token_type": "Bearer", "expires_in": self.lifetime, "ext_expires_in": self.lifetime,
                "access_token": token}


class _Handler(BaseHTTPRequestHandler):
    endpoint: TokenServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    def do_GET(self) -> None:  # noqa: N802
        self._send(405, {"error": "invalid_request", "error_description": "use POST"})

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode()
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if self.path not in (PATH, INTROSPECTION_PATH):
            self._send(404, {"error": "invalid_request", "error_description": "no such endpoint"})
            return
        if ctype != "application/x-www-form-urlencoded":
            self._send(400, {"error": "invalid_request", "error_description": f"content type {ctype!r}"})
            return
        form = {k: v[0] for k, v in urllib.parse.parse_qs(raw, keep_blank_values=True).items()}
        if self.path == INTROSPECTION_PATH:
            self._send(200, self.endpoint.introspect(form.get("token", "")))
            return
        status, body = self.endpoint.answer(form, self.headers.get("Authorization"))
        how = ("basic" if (self.headers.get("Authorization") or "").lower().startswith("basic ")
               else "assertion" if "client_assertion" in form else "secret_post" if "client_secret" in form
               else "none")
        with self.endpoint.lock:
            self.endpoint.requests.append(TokenRequest(form.get("grant_type", ""), form.get("client_id", ""), how,
                                                       form.get("scope", ""), status, body.get("error"), time.time()))
        self._send(status, body)

    def _send(self, status: int, body: dict[str, Any]) -> None:
        if status >= 500 and not body:
            data, ctype = b"<html><body>Service Unavailable</body></html>", "text/html"
        else:
            data, ctype = json.dumps(body).encode(), "application/json; charset=utf-8"
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Pragma", "no-cache")
        if status == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="token"')
        self.end_headers()
        self.wfile.write(data)
