"""Every configuration under examples/ passes `pipeline check` once its environment is given."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailpipe.core.intake.auth import hash_password
from tests.peers.mailpipe import run_pipeline

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_checks(example: Path, pki, tmp_path: Path):
    secret_hash = hash_password("example-secret")
    env = {
        "MAILPIPE_STATE_DIR": str(tmp_path / "state"),
        "MAILPIPE_CERT": str(pki.cert_file), "MAILPIPE_KEY": str(pki.key_file),
        "MAILPIPE_USER_HASH": secret_hash, "MAILPIPE_CONSOLE_HASH": secret_hash,
        "ISP_USERNAME": "gateway", "ISP_PASSWORD": "example-secret", "ALICE_PASSWORD": "example-secret",
        "BOB_PASSWORD": "example-secret", "OAUTH_USER": "gateway", "OAUTH_TOKEN": "example-token",
    }
    res = run_pipeline(example, "check", env=env)
    assert f"configuration {example}: OK" in res.stdout
    assert "example-secret" not in res.stdout + res.stderr and "example-token" not in res.stdout + res.stderr
