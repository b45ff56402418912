"""Options of the ``dkim`` plugin: the signing keys per domain and selector, and what is signed."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from mailpipe.core.settings import Strict

Algorithm = Literal["rsa-sha256", "ed25519-sha256"]

#: Header fields signed when present (RFC 6376 section 5.4.1, plus the MIME and list fields).
DEFAULT_HEADERS = [
    "from", "sender", "reply-to", "subject", "date", "message-id", "to", "cc", "mime-version", "content-type",
    "content-transfer-encoding", "content-id", "content-description", "resent-date", "resent-from",
    "resent-sender", "resent-to", "resent-cc", "resent-message-id", "in-reply-to", "references", "list-id",
    "list-help", "list-unsubscribe", "list-unsubscribe-post", "list-subscribe", "list-post", "list-owner",
    "list-archive", "autocrypt", "openpgp",
]
#: Signed once more than they occur, so none can be added on the way without breaking the signature.
DEFAULT_OVERSIGN = [
    "from", "reply-to", "subject", "date", "message-id", "to", "cc", "mime-version", "content-type",
    "content-transfer-encoding", "list-unsubscribe", "list-unsubscribe-post",
]


class KeySpec(Strict):
    """One signing key: ``{domain, selector, key_file, algorithm}``.

    ``algorithm`` defaults to the key's own type (``rsa-sha256`` for an RSA key,
    ``ed25519-sha256`` for an Ed25519 key, RFC 8463); when given it must fit the key.
    """

    domain: str
    selector: str
    key_file: Path
    algorithm: Algorithm | None = None

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: str) -> str:
        value = value.strip().lower().rstrip(".")
        if not value or "." not in value or any(c.isspace() or c in "@/" for c in value):
            raise ValueError(f"expected a domain such as example.org, got {value!r}")
        return value

    @field_validator("selector")
    @classmethod
    def _selector(cls, value: str) -> str:
        value = value.strip()
        labels = value.split(".")
        if not value or not all(lb and all(c.isalnum() or c in "-_" for c in lb) for lb in labels):
            raise ValueError(f"expected a selector of letters, digits, '-' and '_' (e.g. s2026), got {value!r}")
        return value


class DkimOptions(Strict):
    """Options of ``chain: - dkim: {...}``."""

    keys: list[KeySpec] = Field(description="signing keys; several for one domain sign it several times")
    sign_by: Literal["from", "sender"] = Field(
        "from", description="whose domain signs: the From header's (DMARC alignment) or the envelope sender's")
    subdomains: bool = Field(True, description="a key of example.org also signs mail of gw.example.org")
    headers: list[str] = Field(default_factory=lambda: list(DEFAULT_HEADERS), description="header fields signed")
    oversign: list[str] = Field(default_factory=lambda: list(DEFAULT_OVERSIGN),
                                description="header fields signed once more than they occur (From always)")

    @field_validator("headers", "oversign")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        out = []
        for name in value:
            name = name.strip().lower()
            if not name or any(c.isspace() or c == ":" for c in name):
                raise ValueError(f"expected a header field name, got {name!r}")
            if name not in out:
                out.append(name)
        return out

    @model_validator(mode="after")
    def _consistent(self) -> DkimOptions:
        if not self.keys:
            raise ValueError("expected at least one key: {domain, selector, key_file}")
        seen = set()
        for key in self.keys:
            if (key.domain, key.selector) in seen:
                raise ValueError(f"two keys for {key.selector}._domainkey.{key.domain}")
            seen.add((key.domain, key.selector))
        if "from" not in self.headers:
            self.headers.insert(0, "from")
        if "from" not in self.oversign:
            self.oversign.insert(0, "from")
        return self
