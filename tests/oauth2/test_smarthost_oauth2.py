"""The smarthost logging in with OAuth2 tokens mailpipe fetches itself, against the test token endpoint and a
smarthost that checks each bearer token there (Microsoft 365 app-only and Gmail-style delegated logins)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.peers.certs import TestPKI
from tests.peers.harness import Harness
from tests.peers.net import free_port
from tests.peers.sink import RecordingSink
from tests.peers.token_server import TokenServer

from .bearer_sink import BearerSink
from .conftest import APP, GMAIL_APP, GMAIL_SCOPE, SCOPE, SECRET
from .dovecot_oauth2 import OAuth2Dovecot

GATEWAY = "gateway@example.org"


def config(workdir: Path, sink: BearerSink, pki: TestPKI, auth: dict[str, Any], *,
           accounts: list[dict[str, Any]] | None = None, **smarthost: Any) -> dict[str, Any]:
    return {
        "hostname": "gw.test",
        "state_dir": str(workdir / "state"),
        "listen": [f"127.0.0.1:{free_port()}"],
        "accounts": accounts or [],
        "chain": [{"smarthost": {"server": f"{sink.host}:{sink.port}", "tls": "starttls", "ca_file": str(pki.ca_file),
                                 "auth": auth, **smarthost}},
                  {"retry": {"every": "10m", "expire_after": "2d"}}],
    }


def app_only(server: TokenServer, pki: TestPKI, **changes: Any) -> dict[str, Any]:
    """``auth:`` of a Microsoft 365 app-only login (client credentials, SMTP.SendAsApp)."""
    return {"mode": "login", "mechanism": "xoauth2", "username": GATEWAY,
            "oauth2": {"flow": "client_credentials", "token_url": server.url, "client_id": APP,
                       "client_secret": SECRET, "scope": SCOPE, "ca_file": str(pki.ca_file), **changes}}


def no_secrets(texts: list[str], server: TokenServer, *extra: str) -> None:
    """None of ``texts`` shows the client secret, an access token or a refresh token."""
    secrets = [SECRET, *server.issued, *server.refresh_tokens, *extra]
    for text in texts:
        for secret in secrets:
            assert secret not in text, f"secret shown in {text!r}"


def test_app_only_token_fetched_once_for_many_connections(workdir: Path, pki: TestPKI,
                                                          token_server: TokenServer) -> None:
    """Three messages on three connections (one message per connection): one token request, three XOAUTH2
    logins the smarthost accepts with that token, one event saying a token was fetched (without it)."""
    with BearerSink("127.0.0.1", pki, token_server, {GATEWAY: APP}) as sink:

        async def scenario() -> tuple[list[Any], list[Any]]:
            cfg = config(workdir, sink, pki, app_only(token_server, pki), max_messages_per_connection=1)
            async with Harness(workdir, cfg) as h:
                ids = [await h.submit("alice@example.org", [f"r{i}@remote.test"]) for i in range(3)]
                await h.deliver()
                for i, mid in enumerate(ids):
                    assert await h.states(mid) == {f"r{i}@remote.test": "delivered"}
                return await h.events("smarthost"), await h.attempts()

        events, attempts = asyncio.run(scenario())
        got = sink.wait_for(3)
    assert token_server.count() == 1 and token_server.requests[0].grant_type == "client_credentials"
    assert [ok for _, _, ok in sink.attempts] == [True, True, True]
    assert len({token for _, token, _ in sink.attempts}) == 1
    assert {m.auth_login for m in got} == {GATEWAY}
    assert [e.kind for e in events] == ["smarthost.oauth2_token"]
    assert "valid for 3600s" in events[0].text
    no_secrets([e.text for e in events] + [str(e.data) for e in events] + [a.text for a in attempts], token_server)


def test_expired_and_refused_tokens_are_renewed(workdir: Path, pki: TestPKI, token_server: TokenServer) -> None:
    """A token past its lifetime is fetched anew for the next connection; a token the smarthost refuses
    although it looked valid (revoked, expired early) is forgotten and the login made once more with a
    fresh one: the mail goes out, no login failure is reported."""
    with BearerSink("127.0.0.1", pki, token_server, {GATEWAY: APP}) as sink:

        async def scenario() -> list[Any]:
            cfg = config(workdir, sink, pki, app_only(token_server, pki), max_messages_per_connection=1)
            async with Harness(workdir, cfg) as h:
                first = await h.submit("alice@example.org", ["a@remote.test"])
                await h.deliver()
                assert token_server.count() == 1
                h.clock.advance(3600)  # the cached token has expired
                second = await h.submit("alice@example.org", ["b@remote.test"])
                await h.deliver()
                assert token_server.count() == 2
                token_server.revoke_all()  # the server no longer takes the cached one
                third = await h.submit("alice@example.org", ["c@remote.test"])
                await h.deliver()
                for mid in (first, second, third):
                    assert set((await h.states(mid)).values()) == {"delivered"}
                return await h.events("smarthost")

        events = asyncio.run(scenario())
    assert token_server.count() == 3
    assert [ok for _, _, ok in sink.attempts] == [True, True, False, True]
    assert sink.attempts[2][1] == sink.attempts[1][1]  # the revoked token was tried once, then a fresh one
    assert [e.kind for e in events] == ["smarthost.oauth2_token"] * 3


def test_token_endpoint_failure_keeps_mail_waiting(workdir: Path, pki: TestPKI, token_server: TokenServer) -> None:
    """The endpoint refuses (invalid_client) or is down: every message waits (451 4.7.0, never a bounce), one
    smarthost.token_failed event names the endpoint and the error, the endpoint is asked once, nothing reaches
    the smarthost; once the endpoint answers again the mail goes out and smarthost.token_ok says so."""
    token_server.fail_next(401, "invalid_client", "AADSTS7000222: the client secret keys are expired")
    with BearerSink("127.0.0.1", pki, token_server, {GATEWAY: APP}) as sink:

        async def scenario() -> tuple[dict[str, str], Any, list[Any], list[Any]]:
            async with Harness(workdir, config(workdir, sink, pki, app_only(token_server, pki))) as h:
                ids = [await h.submit("alice@example.org", [f"r{i}@remote.test"]) for i in range(3)]
                await h.deliver()
                states = {k: v for mid in ids for k, v in (await h.states(mid)).items()}
                attempt = (await h.last_attempts(ids[0]))["r0@remote.test"]
                failed = await h.events("smarthost")
                assert token_server.count() == 1 and sink.attempts == []
                h.clock.advance(601)
                await h.deliver()
                for mid in ids:
                    assert set((await h.states(mid)).values()) == {"delivered"}
                return states, attempt, failed, await h.events("smarthost")

        states, attempt, failed, events = asyncio.run(scenario())
    assert set(states.values()) == {"deferred"}
    assert (attempt.code, attempt.enhanced) == (451, "4.7.0")
    assert "no OAuth2 token for login:gateway@example.org" in attempt.text
    assert "invalid_client: AADSTS7000222" in attempt.text and token_server.url in attempt.text
    assert [e.kind for e in failed] == ["smarthost.token_failed"]
    assert "stays queued" in failed[0].text and failed[0].level == "error"
    assert [e.kind for e in events] == ["smarthost.token_failed", "smarthost.token_ok", "smarthost.oauth2_token"]
    no_secrets([attempt.text] + [e.text for e in events] + [str(e.data) for e in events], token_server)


def test_sender_accounts_with_delegated_refresh_tokens(workdir: Path, pki: TestPKI, token_server: TokenServer) -> None:
    """sender-account mode: each account with oauth2 (refresh token flow, Gmail-style, rotating) logs in as
    itself with its own token; alice's rotated refresh token is written back to her file."""
    token_server.rotate = True
    alice_file = workdir / "alice.refresh"
    alice_file.write_text(token_server.grant(GMAIL_APP, "alice@example.org") + "\n")
    alice_file.chmod(0o600)
    first_alice = alice_file.read_text().strip()
    bob_refresh = token_server.grant(GMAIL_APP, "bob@example.org")

    def oauth(**where: str) -> dict[str, Any]:
        return {"flow": "refresh_token", "token_url": token_server.url, "client_id": GMAIL_APP,
                "client_secret": SECRET, "scope": GMAIL_SCOPE, "ca_file": str(pki.ca_file), **where}

    accounts = [{"address": "alice@example.org", "username": "alice@example.org",
                 "oauth2": oauth(refresh_token_file=str(alice_file))},
                {"address": "bob@example.org", "username": "bob@example.org",
                 "oauth2": oauth(refresh_token=bob_refresh)}]
    mailboxes = {"alice@example.org": "alice@example.org", "bob@example.org": "bob@example.org"}
    with BearerSink("127.0.0.1", pki, token_server, mailboxes) as sink:

        async def scenario() -> list[Any]:
            cfg = config(workdir, sink, pki, {"mode": "sender-account"}, accounts=accounts)
            async with Harness(workdir, cfg) as h:
                for sender in ("alice@example.org", "bob@example.org", "alice@example.org"):
                    await h.submit(sender, ["r@remote.test"])
                await h.deliver()
                return await h.events("smarthost")

        events = asyncio.run(scenario())
        got = sink.wait_for(3)
    assert sorted((m.mail_from, m.auth_login) for m in got) == [
        ("alice@example.org", "alice@example.org"), ("alice@example.org", "alice@example.org"),
        ("bob@example.org", "bob@example.org")]
    assert token_server.count("refresh_token", ok=True) == 2  # one per account
    stored = alice_file.read_text().strip()
    assert stored != first_alice and stored in token_server.refresh_tokens
    assert sorted(e.kind for e in events) == ["smarthost.oauth2_token", "smarthost.oauth2_token",
                                              "smarthost.oauth2_warning"]  # bob's rotation: memory only
    no_secrets([e.text for e in events] + [str(e.data) for e in events], token_server, first_alice, bob_refresh)


def test_basic_auth_disabled_tells_the_admin_to_switch(workdir: Path, pki: TestPKI, token_server: TokenServer) -> None:
    """A password login answered `550 5.7.30 Basic authentication is not supported`: mail waits (451), and an
    event tells the admin to switch this login to OAuth2; the password is not shown."""
    password = "Pa55-word-basic"
    auth = {"mode": "login", "mechanism": "login", "username": GATEWAY, "password": password}
    with BearerSink("127.0.0.1", pki, token_server, {GATEWAY: APP}, basic_auth="disabled") as sink:

        async def scenario() -> tuple[dict[str, str], Any, list[Any]]:
            async with Harness(workdir, config(workdir, sink, pki, auth)) as h:
                mid = await h.submit("alice@example.org", ["r@remote.test"])
                await h.deliver()
                return await h.states(mid), (await h.last_attempts(mid))["r@remote.test"], await h.events("smarthost")

        states, attempt, events = asyncio.run(scenario())
    assert states == {"r@remote.test": "deferred"} and attempt.code == 451
    switch = [e for e in events if e.kind == "smarthost.basic_auth_disabled"]
    assert len(switch) == 1 and "5.7.30" in switch[0].text and "switch login:gateway@example.org to OAuth2" in \
        switch[0].text and "auth.oauth2" in switch[0].text
    for text in [attempt.text] + [e.text for e in events]:
        assert password not in text


def test_pop_before_smtp_with_xoauth2(workdir: Path, pki: TestPKI, token_server: TokenServer) -> None:
    """pop-before-smtp with an account that has oauth2: the POP3 login is AUTH XOAUTH2 with a fetched token,
    which Dovecot checks at the endpoint (introspection); then the mail goes out. A refused token is
    forgotten: the next POP3 login fetches a new one."""
    refresh = token_server.grant(GMAIL_APP, "alice@example.org")
    account = {"address": "alice@example.org", "username": "alice@example.org",
               "pop3": {"server": "127.0.1.110", "tls": "implicit", "ca_file": str(pki.ca_file)},
               "oauth2": {"flow": "refresh_token", "token_url": token_server.url, "client_id": GMAIL_APP,
                          "client_secret": SECRET, "refresh_token": refresh, "ca_file": str(pki.ca_file)}}
    with OAuth2Dovecot(workdir / "dovecot", pki, token_server) as dovecot, RecordingSink() as sink:
        account["pop3"]["port"] = dovecot.pop3s_port
        cfg = {"hostname": "gw.test", "state_dir": str(workdir / "state"), "accounts": [account],
               "chain": [{"smarthost": {"server": f"{sink.host}:{sink.port}", "tls": "none",
                                        "auth": {"mode": "pop-before-smtp", "pop_login_window": "10m"}}},
                         {"retry": {"every": "10m", "expire_after": "2d"}}]}

        async def scenario() -> list[Any]:
            async with Harness(workdir, cfg) as h:
                first = await h.submit("alice@example.org", ["r@remote.test"])
                await h.deliver()
                assert await h.states(first) == {"r@remote.test": "delivered"}
                token_server.revoke_all()
                h.clock.advance(601)  # the POP3 login is older than the window: a new one is made
                second = await h.submit("alice@example.org", ["s@remote.test"])
                await h.deliver()  # the cached token is refused by Dovecot: the mail waits, the token is forgotten
                assert await h.states(second) == {"s@remote.test": "deferred"}
                h.clock.advance(601)
                await h.deliver()
                assert await h.states(second) == {"s@remote.test": "delivered"}
                return await h.events("smarthost")

        events = asyncio.run(scenario())
        logins = dovecot.wait_for_logins(2)
        got = sink.wait_for(2)
    assert [(x.user, x.method) for x in logins] == [("alice@example.org", "XOAUTH2")] * 2
    assert token_server.count("refresh_token", ok=True) == 2 and len(got) == 2
    kinds = [e.kind for e in events]
    assert kinds.count("smarthost.pop3_login") == 2 and kinds.count("smarthost.pop3_login_failed") == 1
    no_secrets([e.text for e in events] + [str(e.data) for e in events], token_server, refresh)
