"""``pipeline route ADDRESS``: servers in order, TLS and the login mode, never a password."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.peers.mailpipe import run_pipeline

from .helpers import smarthost_config


def test_route_shows_servers_and_login_without_secrets(workdir: Path) -> None:
    """`pipeline route` shows servers, TLS, login mode and login name; no password in any output."""
    config = smarthost_config(workdir, {
        "server": ["smtp1.isp.test", "smtp2.isp.test:2587"], "port": 587,
        "auth": {"mode": "sender-account", "mechanism": "cram-md5"},
    }, accounts=[{"address": "alice@example.org", "username": "alice-login", "password": "Pa55-alice"}])
    path = workdir / "route.yaml"
    path.write_text(yaml.safe_dump(config))
    known_json = run_pipeline(path, "route", "r@remote.test", "--sender", "alice@example.org", "--json")
    (known,) = json.loads(known_json.stdout)
    assert known["servers"] == ["smtp1.isp.test:587", "smtp2.isp.test:2587"]
    assert (known["tls"], known["auth"], known["mechanism"], known["login"]) == \
        ("starttls", "sender-account", "cram-md5", "alice-login")
    known_text = run_pipeline(path, "route", "r@remote.test", "--sender", "alice@example.org")
    assert "alice-login" in known_text.stdout and "cram-md5" in known_text.stdout
    unknown = run_pipeline(path, "route", "r@remote.test", "--sender", "carol@example.org")
    assert "no Internet Mail Account for <carol@example.org>" in unknown.stdout
    for res in (known_json, known_text, unknown):
        assert "Pa55-alice" not in res.stdout + res.stderr, res.args
