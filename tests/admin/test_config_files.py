"""Every file a configuration names is checked when it is loaded: ``check`` and ``serve`` refuse the same.

A CA file, certificate or key that is missing, a folder, not PEM, or a certificate and key
that do not belong together: exit 2 and one ``error:`` line naming the key path and the
file, from ``pipeline check`` and from ``pipeline serve`` alike (which binds nothing).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.peers.certs import TestPKI
from tests.peers.mailpipe import run_pipeline
from tests.peers.net import free_port
from tests.peers.net import port_accepts as port_open

from .helpers import base_config, write


def smarthost(**options: Any) -> dict[str, Any]:
    return {"smarthost": {"server": "smtp.isp.test", "tls": "starttls", **options}}


def console(**options: Any) -> dict[str, Any]:
    return {"console": {"listen": f"127.0.0.1:{free_port()}",
                        "users": [{"username": "admin", "password_hash": "$argon2id$v=19$m=65536,t=3,p=4$x$y"}],
                        **options}}


def other_key(tmp: Path) -> Path:
    """A private key of another certificate than the test PKI's."""
    key = tmp / "other.key"
    trustme.CA().issue_cert("localhost").private_key_pem.write_to_path(str(key))
    return key


def cases(tmp: Path, pki: TestPKI) -> dict[str, tuple[dict[str, Any], str, str]]:
    """name -> (config, key path, what the line says after it)."""
    (tmp / "folder.pem").mkdir()
    (tmp / "junk.pem").write_text("this is not a certificate\n")
    listen = f"127.0.0.1:{free_port()}"
    return {
        "ca_file missing": (base_config(tmp, [smarthost(ca_file="missing-ca.pem")]), "chain[0].smarthost.ca_file",
                            f"{tmp / 'missing-ca.pem'}: no such file"),
        "ca_file a folder": (base_config(tmp, [smarthost(ca_file=str(tmp / "folder.pem"))]),
                             "chain[0].smarthost.ca_file", f"{tmp / 'folder.pem'}: is a folder, not a file"),
        "ca_file not PEM": (base_config(tmp, [smarthost(ca_file="junk.pem")]), "chain[0].smarthost.ca_file",
                            f"{tmp / 'junk.pem'}: not a PEM file with CA certificates"),
        "console cert missing": (base_config(tmp, [{"direct": {}}, console(tls=True, cert="nope.pem",
                                                                           key=str(pki.key_file))]),
                                 "chain[1].console.cert", f"{tmp / 'nope.pem'}: no such file"),
        "console key of another cert": (
            base_config(tmp, [{"direct": {}}, console(tls=True, cert=str(pki.cert_file), key=str(other_key(tmp)))]),
            "chain[1].console", f"certificate {pki.cert_file} and key {tmp / 'other.key'} cannot be used together"),
        "listener key not PEM": (
            base_config(tmp, [{"direct": {}}], listen=[{"address": listen, "tls": "starttls",
                                                      "cert": str(pki.cert_file), "key": "junk.pem"}]),
            "listen[0].key", f"{tmp / 'junk.pem'}: not a PEM file with a private key"),
        "pop3 ca_file missing": (
            base_config(tmp, [smarthost(auth={"mode": "sender-account"})], accounts=[
                {"address": "a@example.org", "username": "a", "password": "pw",
                 "pop3": {"server": "pop.isp.test", "ca_file": "pop-ca.pem"}}]),
            "accounts[0].pop3.ca_file", f"{tmp / 'pop-ca.pem'}: no such file"),
    }


@pytest.mark.parametrize("case", ["ca_file missing", "ca_file a folder", "ca_file not PEM", "console cert missing",
                                  "console key of another cert", "listener key not PEM", "pop3 ca_file missing"])
def test_check_and_serve_refuse_a_bad_file_naming_key_and_file(case: str, tmp_path: Path, pki: TestPKI) -> None:
    config, key, what = cases(tmp_path, pki)[case]
    path = write(tmp_path / "mailpipe.yaml", config)
    results = [run_pipeline(path, command, check=False, timeout=30) for command in ("check", "serve")]
    for res in results:
        assert res.returncode == 2, (case, res.stdout, res.stderr)
        assert res.stderr.startswith(f"error: {path}: {key}: {what}"), (case, res.stderr)
        assert len(res.stderr.splitlines()) == 1 and "Traceback" not in res.stderr, res.stderr
    assert results[0].stderr == results[1].stderr
    host, port = config["listen"][0]["address"].rsplit(":", 1) if isinstance(config["listen"][0], dict) \
        else config["listen"][0].rsplit(":", 1)
    assert not port_open(host, int(port)) and not (tmp_path / "state").exists()


def test_good_files_pass_and_are_shown_resolved(tmp_path: Path, pki: TestPKI) -> None:
    (tmp_path / "certs").mkdir()
    for p in (pki.ca_file, pki.cert_file, pki.key_file):
        (tmp_path / "certs" / p.name).write_bytes(p.read_bytes())
    config = base_config(tmp_path, [smarthost(ca_file="certs/ca.pem"),
                                    console(tls=True, cert="certs/server.pem", key="certs/server.key")])
    path = write(tmp_path / "mailpipe.yaml", config)
    assert "OK" in run_pipeline(path, "check").stdout
    import json

    shown = json.loads(run_pipeline(path, "config", "--json").stdout)
    assert shown["chain"][0]["smarthost"]["ca_file"] == str(tmp_path / "certs" / "ca.pem")
    assert shown["chain"][1]["console"]["cert"] == str(tmp_path / "certs" / "server.pem")
