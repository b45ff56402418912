"""mechanism: xoauth2 against an SMTP server that offers XOAUTH2: token from config or from a command."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from tests.peers.certs import TestPKI
from tests.peers.harness import Harness

from .helpers import smarthost_config
from .oauth_sink import OAuthSink

TOKEN = "ya29.test-access-token-4711"


def oauth_config(workdir, sink, pki, **auth):
    return smarthost_config(workdir, {
        "server": f"{sink.host}:{sink.port}", "tls": "starttls", "ca_file": str(pki.ca_file),
        "auth": {"mode": "login", "mechanism": "xoauth2", "username": "gateway@isp.test", **auth},
    })


@pytest.mark.parametrize("source", ["token", "token_command"])
def test_xoauth2_token_from_config_or_command(workdir: Path, pki: TestPKI, source: str) -> None:
    """XOAUTH2 with a token from the config or from a command logs in and delivers."""
    auth = {"token": TOKEN} if source == "token" else {
        "token_command": [sys.executable, "-c", f"print({TOKEN!r})"]}
    with OAuthSink("127.0.0.1", pki, {"gateway@isp.test": TOKEN}) as sink:

        async def scenario():
            async with Harness(workdir, oauth_config(workdir, sink, pki, **auth)) as h:
                mid = await h.submit("alice@example.org", ["r@remote.test"])
                await h.deliver()
                assert await h.states(mid) == {"r@remote.test": "delivered"}

        asyncio.run(scenario())
        got = sink.wait_for(1)
    assert got[0].auth_login == "gateway@isp.test"
    assert sink.oauth.attempts == [("gateway@isp.test", TOKEN)]


@pytest.mark.parametrize("source", ["token", "token_command"])
def test_xoauth2_bad_token_keeps_mail_queued(workdir: Path, pki: TestPKI, source: str) -> None:
    """A refused token (334 JSON error, then 535) or a failing token command: deferred, one event, no token shown."""
    bad = "ya29.expired-token-0815"
    auth = {"token": bad} if source == "token" else {
        # prints a token, then fails: what it printed must not be shown (built here so the command text
        # itself does not contain the token)
        "token_command": "python3 -c \"import sys; print('ya29.expired-' + 'token-0815'); "
                         "print('refresh failed', file=sys.stderr); sys.exit(3)\""}
    with OAuthSink("127.0.0.1", pki, {"gateway@isp.test": TOKEN}) as sink:

        async def scenario():
            async with Harness(workdir, oauth_config(workdir, sink, pki, **auth)) as h:
                ids = [await h.submit("alice@example.org", [f"r{i}@remote.test"]) for i in range(2)]
                await h.deliver()
                for i, mid in enumerate(ids):
                    assert await h.states(mid) == {f"r{i}@remote.test": "deferred"}
                return (await h.last_attempts(ids[0]))["r0@remote.test"], await h.events("smarthost.login_failed")

        attempt, events = asyncio.run(scenario())
    assert sink.messages == []
    assert len(events) == 1
    if source == "token":
        assert (attempt.code, attempt.enhanced) == (451, "4.7.8")
        assert "XOAUTH2" in attempt.text and "535" in attempt.text
        assert sink.oauth.attempts == [("gateway@isp.test", bad)]
    else:
        assert "exited with status 3: refresh failed" in attempt.text
        assert sink.oauth.attempts == []
    for text in (attempt.text, events[0].text, str(events[0].data)):
        assert bad not in text
