"""``pipeline route ADDRESS``: servers in order, TLS and the login mode, never a password."""

from __future__ import annotations

import json

import yaml

from tests.peers.mailpipe import run_pipeline

from .harness import smarthost_config


def test_route_shows_servers_and_login_without_secrets(workdir):
    config = smarthost_config(workdir, {
        "server": ["smtp1.isp.test", "smtp2.isp.test:2587"], "port": 587,
        "auth": {"mode": "sender-account", "mechanism": "cram-md5"},
    }, accounts=[{"address": "alice@example.org", "username": "alice-login", "password": "Pa55-alice"}])
    path = workdir / "route.yaml"
    path.write_text(yaml.safe_dump(config))
    (known,) = json.loads(
        run_pipeline(path, "route", "r@remote.test", "--sender", "alice@example.org", "--json").stdout)
    assert known["servers"] == ["smtp1.isp.test:587", "smtp2.isp.test:2587"]
    assert (known["tls"], known["auth"], known["mechanism"], known["login"]) == \
        ("starttls", "sender-account", "cram-md5", "alice-login")
    text = run_pipeline(path, "route", "r@remote.test", "--sender", "carol@example.org").stdout
    assert "no Internet Mail Account for <carol@example.org>" in text
    assert "Pa55-alice" not in text
