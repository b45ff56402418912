"""The client assertion of a certificate-holding OAuth2 client (RFC 7523 section 2.2, RFC 7521).

Microsoft Entra ID calls this a "certificate credential": a JWT signed with the private key
of a certificate uploaded to the app registration, naming the certificate by its SHA-1
(``x5t``) and SHA-256 (``x5t#S256``) thumbprints. It lives ten minutes and is used once.
"""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
LIFETIME = 600


class CredentialError(Exception):
    """The certificate or key cannot be used (unreadable, not PEM, a key type without a JWT algorithm)."""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def client_assertion(client_id: str, audience: str, cert_file: Path, key_file: Path, now: float) -> str:
    """A signed JWT (RS256 for an RSA key, ES256 for P-256) for ``client_id`` at the token endpoint ``audience``.

    Called by ``TokenProvider`` for each token request of a client with ``client_certificate``.
    Raises ``CredentialError`` with a text that names the file and never shows key material.
    """
    try:
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    except OSError as exc:
        raise CredentialError(f"client certificate {cert_file} cannot be read: {exc.strerror or exc}") from None
    except ValueError:
        raise CredentialError(f"client certificate {cert_file} is not a PEM certificate") from None
    try:
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    except OSError as exc:
        raise CredentialError(f"client key {key_file} cannot be read: {exc.strerror or exc}") from None
    except (ValueError, TypeError):
        raise CredentialError(f"client key {key_file} is not an unencrypted PEM private key") from None
    if isinstance(key, rsa.RSAPrivateKey):
        algorithm = "RS256"
    elif isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1":
        algorithm = "ES256"
    else:
        raise CredentialError(f"client key {key_file}: expected an RSA or P-256 key")
    headers = {"typ": "JWT", "x5t": _b64url(cert.fingerprint(hashes.SHA1())),  # noqa: S303 - the x5t header is SHA-1
               "x5t#S256": _b64url(cert.fingerprint(hashes.SHA256()))}
    issued = int(now)
    claims = {"aud": audience, "iss": client_id, "sub": client_id, "jti": str(uuid.uuid4()),
              "iat": issued, "nbf": issued, "exp": issued + LIFETIME}
    return jwt.encode(claims, key, algorithm=algorithm, headers=headers)
