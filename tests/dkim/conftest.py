"""Fixtures of the DKIM tests: an RSA and an Ed25519 key of example.org, and their DNS records."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from mailpipe.plugins.dkim.keys import generate_key


@dataclass(frozen=True)
class Keys:
    """Key files (mode 0600) and ``{sel._domainkey.dom: TXT value}``."""

    rsa: Path
    ed25519: Path
    records: dict[str, str]

    def config(self, **options: object) -> dict[str, object]:
        """The ``dkim`` chain entry signing example.org with both keys (double signing)."""
        return {"dkim": {"keys": [
            {"domain": "example.org", "selector": "s2026", "key_file": str(self.rsa)},
            {"domain": "example.org", "selector": "e2026", "key_file": str(self.ed25519),
             "algorithm": "ed25519-sha256"},
        ], **options}}


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    folder = tmp_path_factory.mktemp("dkim-keys")
    rsa, ed = folder / "example.org.s2026.key", folder / "example.org.e2026.key"
    records = {"s2026._domainkey.example.org": generate_key(rsa, "rsa-sha256"),
               "e2026._domainkey.example.org": generate_key(ed, "ed25519-sha256")}
    return Keys(rsa, ed, records)


@pytest.fixture(autouse=True)
def _verifiers_installed() -> None:
    missing = [tool for tool in ("opendkim", "perl") if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} not installed: run .ci/install-dkim.sh")
