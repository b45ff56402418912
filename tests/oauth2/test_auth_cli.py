"""`pipeline auth test`, `pipeline route` and `pipeline check` with OAuth2 logins, through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from tests.peers.certs import TestPKI
from tests.peers.mailpipe import run_pipeline
from tests.peers.token_server import TokenServer

from .bearer_sink import BearerSink
from .conftest import APP, CERT_APP, SECRET, ClientCert
from .test_smarthost_oauth2 import GATEWAY, app_only, config, no_secrets


def write(workdir: Path, cfg: dict[str, Any]) -> Path:
    path = workdir / "mailpipe.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def test_auth_test_fetches_logs_in_and_sends_nothing(workdir: Path, pki: TestPKI, token_server: TokenServer,
                                                     client_cert: ClientCert) -> None:
    """A certificate-holding app: the token is fetched (JWT assertion), the XOAUTH2 login is made and accepted,
    QUIT; nothing is sent or queued; the report shows each step, never a secret or token, with --json too."""
    auth = app_only(token_server, pki, client_id=CERT_APP, client_secret=None,
                    client_certificate={"cert_file": str(client_cert.cert_file),
                                        "key_file": str(client_cert.key_file)})
    with BearerSink("127.0.0.1", pki, token_server, {GATEWAY: CERT_APP}) as sink:
        path = write(workdir, config(workdir, sink, pki, auth))
        res = run_pipeline(path, "auth", "test")
        data = json.loads(run_pipeline(path, "auth", "test", "--json").stdout)
    lines = res.stdout.splitlines()
    assert lines[0] == f"smarthost: login:{GATEWAY}: OK"
    assert f"token: OAuth2 access token from {token_server.url} (client_credentials), valid for 3600s" in lines[1]
    assert lines[2].strip() == (f"connected to 127.0.0.1:{sink.port} (TLS, logged in as {GATEWAY} with XOAUTH2); "
                                "nothing sent")
    assert data == [{"plugin": "smarthost", "login": f"login:{GATEWAY}", "ok": True,
                     "steps": [ln.strip() for ln in lines[1:]]}]
    assert [ok for _, _, ok in sink.attempts] == [True, True] and sink.messages == []
    assert [r.client_auth for r in token_server.requests] == ["assertion", "assertion"]
    assert not (workdir / "state").exists() or not any((workdir / "state").iterdir())  # no queue opened
    no_secrets([res.stdout, res.stderr, json.dumps(data)], token_server)


def test_auth_test_reports_a_refused_client(workdir: Path, pki: TestPKI, token_server: TokenServer) -> None:
    """A wrong client secret: exit status 1, FAILED with the endpoint's error; the secret is not shown."""
    wrong = SECRET + "-old"
    with BearerSink("127.0.0.1", pki, token_server, {GATEWAY: APP}) as sink:
        path = write(workdir, config(workdir, sink, pki, app_only(token_server, pki, client_secret=wrong)))
        res = run_pipeline(path, "auth", "test", check=False)
    assert res.returncode == 1, res.stdout + res.stderr
    assert res.stdout.splitlines()[0] == f"smarthost: login:{GATEWAY}: FAILED"
    assert "invalid_client" in res.stdout and "check client_id and client_secret" in res.stdout
    assert sink.attempts == []
    no_secrets([res.stdout, res.stderr], token_server, wrong)


def test_route_and_check_show_oauth2_without_secrets(workdir: Path, pki: TestPKI, token_server: TokenServer) -> None:
    """`pipeline route` names the flow, endpoint and client; `pipeline check` warns about a refresh token file
    that cannot be read; neither shows a secret."""
    refresh = token_server.grant(APP, "alice@example.org")
    with BearerSink("127.0.0.1", pki, token_server, {GATEWAY: APP}) as sink:
        path = write(workdir, config(workdir, sink, pki, app_only(token_server, pki)))
        [route] = json.loads(run_pipeline(path, "route", "r@remote.test", "--json").stdout)
        assert route["mechanism"] == "xoauth2" and route["login"] == GATEWAY
        assert route["token"] == f"OAuth2 client_credentials from {token_server.url} (client {APP})"
        missing = workdir / "missing.refresh"
        accounts = [{"address": "alice@example.org", "username": "alice@example.org",
                     "oauth2": {"flow": "refresh_token", "token_url": token_server.url, "client_id": APP,
                                "client_secret": SECRET, "refresh_token_file": str(missing)}},
                    {"address": "bob@example.org", "username": "bob@example.org",
                     "oauth2": {"flow": "refresh_token", "token_url": token_server.url, "client_id": APP,
                                "refresh_token": refresh}}]
        path = write(workdir, config(workdir, sink, pki, {"mode": "sender-account"}, accounts=accounts))
        checked = run_pipeline(path, "check")
        as_json = json.loads(run_pipeline(path, "check", "--json").stdout)
        [alice] = json.loads(run_pipeline(path, "route", "r@remote.test", "--json", "--sender",
                                          "alice@example.org").stdout)
    assert (f"warning: smarthost: sender-account:alice@example.org: oauth2.refresh_token_file {missing} "
            "cannot be read") in checked.stderr
    assert as_json["warnings"] == [checked.stderr.strip().removeprefix("warning: ")]
    assert alice["login"] == "alice@example.org" and alice["mechanism"] == "xoauth2"
    no_secrets([checked.stdout, checked.stderr, json.dumps(as_json), json.dumps(route), json.dumps(alice)],
               token_server, refresh)
