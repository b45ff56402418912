"""``pipeline dkim keygen`` and the DKIM warnings of ``pipeline check``, through the real CLI."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.peers.mailpipe import run_pipeline

from .conftest import Keys


def test_keygen_writes_a_private_key_and_prints_the_record(tmp_path: Path) -> None:
    """RSA 2048 and Ed25519: the key file is 0600 and its public half is the p= of the printed TXT record;
    an existing file is never replaced; keys under 2048 bits are refused."""
    rsa_file, ed_file = tmp_path / "rsa.key", tmp_path / "ed.key"
    out = run_pipeline(None, "dkim", "keygen", "Example.ORG", "s2026", "-o", str(rsa_file)).stdout
    assert stat.S_IMODE(rsa_file.stat().st_mode) == 0o600
    key = serialization.load_pem_private_key(rsa_file.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert f"v=DKIM1; k=rsa; p={base64.b64encode(spki).decode()}" in out
    assert "s2026._domainkey.example.org" in out and f"key_file: {rsa_file}" in out
    assert "PRIVATE KEY" not in out

    info = json.loads(run_pipeline(None, "dkim", "keygen", "example.org", "e2026", "--algorithm", "ed25519",
                                   "-o", str(ed_file), "--json").stdout)
    assert stat.S_IMODE(ed_file.stat().st_mode) == 0o600
    raw = serialization.load_pem_private_key(ed_file.read_bytes(), password=None).public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert info["record"] == f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode()}"
    assert (info["record_name"], info["algorithm"]) == ("e2026._domainkey.example.org", "ed25519-sha256")

    before = rsa_file.read_bytes()
    again = run_pipeline(None, "dkim", "keygen", "example.org", "s2026", "-o", str(rsa_file), check=False)
    assert again.returncode == 1 and "exists" in again.stderr and rsa_file.read_bytes() == before
    weak = run_pipeline(None, "dkim", "keygen", "example.org", "w", "--bits", "1024", "-o", str(tmp_path / "w"),
                        check=False)
    assert weak.returncode == 1 and "too weak" in weak.stderr and not (tmp_path / "w").exists()


def test_check_warns_about_unreadable_weak_and_exposed_keys(tmp_path: Path, keys: Keys) -> None:
    """`pipeline check` names each key that cannot sign well; good keys give no warning."""
    weak = tmp_path / "weak.key"
    weak.write_bytes(rsa.generate_private_key(65537, 1024).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    os.chmod(weak, 0o644)
    config = tmp_path / "mailpipe.yaml"

    def write(key_list: list[dict[str, str]]) -> Path:
        config.write_text(yaml.safe_dump({
            "hostname": "gw.example.org", "state_dir": str(tmp_path / "state"),
            "chain": [{"dkim": {"keys": key_list}}, {"smarthost": {"server": "smtp.isp.test"}}]}))
        return config

    good = [{"domain": "example.org", "selector": "s2026", "key_file": str(keys.rsa)},
            {"domain": "example.org", "selector": "e2026", "key_file": str(keys.ed25519)}]
    res = run_pipeline(write(good), "check")
    assert "warning" not in res.stderr and "configuration" in res.stdout
    assert json.loads(run_pipeline(config, "check", "--json").stdout)["warnings"] == []

    bad = [{"domain": "example.org", "selector": "gone", "key_file": str(tmp_path / "nope.key")},
           {"domain": "example.org", "selector": "weak", "key_file": str(weak)},
           {"domain": "example.org", "selector": "wrong", "key_file": str(keys.ed25519), "algorithm": "rsa-sha256"}]
    res = run_pipeline(write(bad), "check")
    assert res.returncode == 0  # warnings, not errors: the configuration itself is valid
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("warning: dkim: ")]
    assert len(lines) == 4, res.stderr
    assert "gone._domainkey.example.org" in lines[0] and "cannot be read" in lines[0]
    assert "1024-bit RSA key" in lines[1] and "2048" in lines[1]
    assert "may be read by other users" in lines[2] and "chmod 600" in lines[2]
    assert "Ed25519 key but algorithm is rsa-sha256" in lines[3]
    assert len(json.loads(run_pipeline(config, "check", "--json").stdout)["warnings"]) == 4
