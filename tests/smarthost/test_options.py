"""Config validation of the smarthost options, and the runtime guard against plain-text logins."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
import yaml
from aiosmtpd.smtp import AuthResult, LoginPassword
from pydantic import SecretStr

from mailpipe.core.config import load_config
from mailpipe.core.errors import ConfigError
from mailpipe.core.message import Credentials
from mailpipe.plugins.smarthost.auth import LoginFailed, smtp_login
from tests.peers.harness import Harness
from tests.peers.mailpipe import run_pipeline
from tests.peers.sink import RecordingSink

from .helpers import smarthost_config

LOGIN = {"mode": "login", "username": "gw", "password": "s3cret-Pa55"}
POP_ACCOUNT = {"address": "alice@example.org", "username": "alice", "password": "x",
               "pop3": {"server": "pop.isp.test", "tls": "none"}}


def write(workdir, smarthost: dict, **top):
    path = workdir / "check.yaml"
    path.write_text(yaml.safe_dump(smarthost_config(workdir, smarthost, **top)))
    return path


def check(workdir, smarthost: dict, **top) -> tuple[int, str]:
    """``pipeline check`` as an administrator runs it: exit status and output."""
    res = run_pipeline(write(workdir, smarthost, **top), "check", check=False)
    return res.returncode, res.stdout + res.stderr


def refusal(workdir, smarthost: dict, **top) -> str:
    """The ConfigError text the loader gives (what ``pipeline check`` and ``serve`` print)."""
    with pytest.raises(ConfigError) as info:
        load_config(write(workdir, smarthost, **top))
    return str(info.value)


@pytest.mark.parametrize(("smarthost", "top", "expected"), [
    ({"server": "smtp.isp.test", "tls": "none", "auth": LOGIN}, {},
     "chain[0].smarthost: auth.mode: login with tls: none would send the password without encryption; "
     "use tls: starttls or tls: implicit, or set allow_plaintext_auth: true"),
    ({"server": "smtp.isp.test", "tls": "none", "auth": {"mode": "sender-account"}},
     {"accounts": [POP_ACCOUNT]}, "set allow_plaintext_auth: true"),
    ({"server": "smtp.isp.test", "auth": {"mode": "pop-before-smtp"}}, {},
     "pop-before-smtp logs into the first entry of accounts, but accounts is empty"),
    ({"server": "smtp.isp.test", "auth": {"mode": "pop-before-smtp"}}, {"accounts": [POP_ACCOUNT]},
     "accounts[0] (alice@example.org) has pop3.tls: none"),
    ({"server": "smtp.isp.test", "auth": {"mode": "login", "username": "gw", "mechanism": "xoauth2"}}, {},
     "mechanism: xoauth2 needs exactly one of token or token_command"),
    ({"server": "smtp.isp.test", "auth": {"mode": "login", "username": "gw"}}, {},
     "mode: login with mechanism: auto needs password"),
    ({"server": "smtp.isp.test", "auth": {"mode": "none", "password": "x"}}, {},
     "only used with mode: login"),
    ({"server": ["smtp1.isp.test", "smtp2.isp.test:99999"]}, {}, "chain[0].smarthost.server"),
    ({"server": "smtp.isp.test", "auth": {"mode": "login", "username": "gw", "password": "p",
                                          "mechanism": "digest-md5"}}, {}, "chain[0].smarthost.auth.mechanism"),
])
def test_bad_options_are_refused(workdir: Path, smarthost: dict[str, Any], top: dict[str, Any], expected: str) -> None:
    """Each bad smarthost option is refused with a message naming the key; the password is never shown."""
    out = refusal(workdir, smarthost, **top)
    assert expected in out
    assert "s3cret-Pa55" not in out


def test_plaintext_credentials_refused_by_check_and_serve(workdir: Path) -> None:
    """A plain-text server with credentials and no opt-out: nothing starts, the error names the key."""
    smarthost = {"server": "smtp.isp.test", "tls": "none", "auth": LOGIN}
    for command in ("check", "serve"):
        res = run_pipeline(write(workdir, smarthost), command, check=False, timeout=30)
        out = res.stdout + res.stderr
        assert res.returncode == 2, out
        assert "chain[0].smarthost: auth.mode: login with tls: none" in out and "allow_plaintext_auth" in out
        assert "s3cret-Pa55" not in out and "Traceback" not in out


def test_good_options_pass_check(workdir: Path) -> None:
    """Good options pass `pipeline check`; pop-before-smtp with APOP over plain POP3 is accepted."""
    code, out = check(workdir, {"server": ["smtp1.isp.test", "smtp2.isp.test:2525"], "tls": "none",
                                "allow_plaintext_auth": True, "auth": LOGIN})
    assert code == 0, out
    config = load_config(write(workdir, {"server": "smtp.isp.test", "auth": {"mode": "pop-before-smtp"}},
                               accounts=[{**POP_ACCOUNT, "pop3": {"server": "pop.isp.test", "apop": True,
                                                                  "tls": "none"}}]))
    assert config.chain[0].options.auth.mode == "pop-before-smtp"


class CountingSink(RecordingSink):
    """A plain-text SMTP server offering AUTH PLAIN/LOGIN without TLS; counts every AUTH it sees."""

    def __init__(self, host: str) -> None:
        self.auth_calls: list[str] = []

        def authenticator(server, session, envelope, mechanism, auth_data):
            self.auth_calls.append(mechanism)
            ok = isinstance(auth_data, LoginPassword) and auth_data.password == b"s3cret-Pa55"
            return AuthResult(success=ok, auth_data=auth_data.login.decode() if ok else None)

        super().__init__(host, authenticator=authenticator, auth_require_tls=False)


def test_runtime_guard_never_sends_a_password_in_clear() -> None:
    """Even if options were bypassed: smtp_login on a connection without TLS refuses before AUTH."""
    with CountingSink("127.0.1.41") as sink:

        async def scenario():
            client = aiosmtplib.SMTP(hostname=sink.host, port=sink.port, start_tls=False, timeout=10)
            await client.connect()
            await client.ehlo()
            assert "plain" in [m.lower() for m in client.server_auth_methods]
            creds = Credentials("gw", SecretStr("s3cret-Pa55"), "plain", label="login:gw")
            with pytest.raises(LoginFailed) as info:
                await smtp_login(client, creds, host="sink", allow_plaintext=False)
            await client.quit()
            return info.value

        exc = asyncio.run(scenario())
    assert sink.auth_calls == []
    assert exc.reply.code == 451
    assert "not encrypted" in exc.reply.text and "allow_plaintext_auth" in exc.reply.text
    assert "s3cret" not in str(exc)


def test_plaintext_login_with_the_opt_out(workdir: Path) -> None:
    """allow_plaintext_auth: true is the one way to log in without TLS, and then it works."""
    with CountingSink("127.0.1.41") as sink:
        config = smarthost_config(workdir, {"server": f"{sink.host}:{sink.port}", "tls": "none",
                                            "allow_plaintext_auth": True,
                                            "auth": {**LOGIN, "mechanism": "login"}})

        async def scenario():
            async with Harness(workdir, config) as h:
                mid = await h.submit("alice@example.org", ["r@remote.test"])
                await h.deliver()
                assert await h.states(mid) == {"r@remote.test": "delivered"}

        asyncio.run(scenario())
        got = sink.wait_for(1)
    assert sink.auth_calls == ["LOGIN"]
    assert got[0].auth_login == "gw"
