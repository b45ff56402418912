"""TokenProvider against a real HTTPS token endpoint: client credentials, certificates, refresh, errors."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path
from typing import Any

import pytest

from mailpipe.core.clock import ManualClock
from mailpipe.core.settings import OAuth2Settings
from mailpipe.plugins.oauth2 import TokenError, TokenProvider
from mailpipe.plugins.oauth2.provider import FAILURE_PAUSE
from tests.peers.certs import TestPKI
from tests.peers.token_server import TokenServer

from .conftest import APP, CERT_APP, GMAIL_APP, GMAIL_SCOPE, SCOPE, SECRET, ClientCert


def provider(server: TokenServer, pki: TestPKI, clock: ManualClock, **settings: Any) -> TokenProvider:
    base: dict[str, Any] = {"flow": "client_credentials", "token_url": server.url, "client_id": APP,
                            "client_secret": SECRET, "scope": SCOPE, "ca_file": str(pki.ca_file)}
    warnings: list[str] = []
    p = TokenProvider(OAuth2Settings(**{**base, **settings}), now=clock.now, timeout=10, warn=warnings.append)
    p.warnings = warnings  # type: ignore[attr-defined]
    return p


def test_client_credentials_cached_until_shortly_before_expiry(token_server: TokenServer, pki: TestPKI) -> None:
    """One request for many concurrent callers; the token is used until a tenth of its lifetime (at most 5 min)
    before it expires, then one new request."""
    clock = ManualClock()
    p = provider(token_server, pki, clock)

    async def scenario() -> list[str]:
        first = await asyncio.gather(*(p.token() for _ in range(20)))
        values = {t.value for t in first}
        assert len(values) == 1 and token_server.count() == 1
        clock.advance(3600 - 300 - 1)  # lifetime 3600s: renewed 300s before the end
        assert (await p.token()).value in values and token_server.count() == 1
        clock.advance(2)
        second = await p.token()
        assert second.value not in values and token_server.count() == 2
        return [first[0].value, second.value]

    values = asyncio.run(scenario())
    [req] = token_server.requests[:1]
    assert (req.grant_type, req.client_id, req.client_auth, req.scope) == ("client_credentials", APP, "secret_post",
                                                                          SCOPE)
    assert all(token_server.valid(v) for v in values)


def test_client_certificate_assertion(token_server: TokenServer, pki: TestPKI, client_cert: ClientCert) -> None:
    """A client with a certificate proves itself with a signed JWT (x5t, aud, iss/sub, jti checked by the server)."""
    clock = ManualClock()
    p = provider(token_server, pki, clock, client_id=CERT_APP, client_secret=None,
                 client_certificate={"cert_file": str(client_cert.cert_file), "key_file": str(client_cert.key_file)})

    async def scenario() -> None:
        await p.token()
        clock.advance(3600)
        await p.token()  # a second assertion: a new jti, accepted

    asyncio.run(scenario())
    assert [(r.client_auth, r.status) for r in token_server.requests] == [("assertion", 200), ("assertion", 200)]


def test_refresh_token_rotation_written_back(token_server: TokenServer, pki: TestPKI, tmp_path: Path) -> None:
    """flow: refresh_token with an endpoint that rotates: the new refresh token replaces the file (0600, atomic)
    and the next refresh uses it (the old one no longer works)."""
    token_server.rotate = True
    first = token_server.grant(GMAIL_APP, "alice@example.org")
    path = tmp_path / "alice.refresh"
    path.write_text(first + "\n")
    path.chmod(0o600)
    clock = ManualClock()
    p = provider(token_server, pki, clock, flow="refresh_token", client_id=GMAIL_APP, scope=GMAIL_SCOPE,
                 refresh_token_file=str(path))

    async def scenario() -> None:
        await p.token()
        clock.advance(3600)
        await p.token()

    asyncio.run(scenario())
    stored = path.read_text().strip()
    assert stored != first and stored in token_server.refresh_tokens and first not in token_server.refresh_tokens
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [r.status for r in token_server.requests] == [200, 200] and p.rotations == 2
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_inline_refresh_token_rotation_is_kept_in_memory_with_a_warning(token_server: TokenServer,
                                                                         pki: TestPKI) -> None:
    token_server.rotate = True
    clock = ManualClock()
    p = provider(token_server, pki, clock, flow="refresh_token", client_id=GMAIL_APP, scope=None,
                 refresh_token=token_server.grant(GMAIL_APP, "bob@example.org"))

    async def scenario() -> None:
        await p.token()
        clock.advance(3600)
        await p.token()  # with the rotated token from memory

    asyncio.run(scenario())
    assert [r.status for r in token_server.requests] == [200, 200]
    assert len(p.warnings) == 2 and "refresh_token_file" in p.warnings[0]  # type: ignore[attr-defined]


@pytest.mark.parametrize(("status", "error", "expected"), [
    (401, "invalid_client", "refused (HTTP 401): invalid_client: AADSTS7000215"),
    (400, "invalid_grant", "refused (HTTP 400): invalid_grant: AADSTS70000"),
    (503, None, "refused (HTTP 503): no OAuth2 error in the reply"),
])
def test_endpoint_errors_are_clear_paused_and_secret_free(token_server: TokenServer, pki: TestPKI, status: int,
                                                          error: str | None, expected: str) -> None:
    """Each refusal becomes a TokenError naming endpoint, status and OAuth2 error; no secret in it; for
    FAILURE_PAUSE seconds callers get it again without a new request; then a request is made again."""
    clock = ManualClock()
    refresh = token_server.grant(GMAIL_APP, "alice@example.org")
    if error == "invalid_grant":
        p = provider(token_server, pki, clock, flow="refresh_token", client_id=GMAIL_APP, scope=None,
                     refresh_token=refresh + "-revoked")
    elif error == "invalid_client":
        p = provider(token_server, pki, clock, client_secret=SECRET + "-wrong")
    else:
        token_server.fail_next(status)
        p = provider(token_server, pki, clock)

    async def scenario() -> list[str]:
        texts = []
        for _ in range(3):
            with pytest.raises(TokenError) as info:
                await p.token()
            texts.append(str(info.value))
        assert token_server.count() == 1
        clock.advance(FAILURE_PAUSE + 1)
        try:
            await p.token()
        except TokenError as exc:
            texts.append(str(exc))
        assert token_server.count() == 2
        return texts

    texts = asyncio.run(scenario())
    assert expected in texts[0] and token_server.url in texts[0]
    for text in texts:
        assert SECRET not in text and refresh not in text


def test_untrusted_endpoint_certificate(token_server: TokenServer, pki: TestPKI) -> None:
    """Without the private CA the endpoint's certificate is not trusted: nothing is sent, a clear error."""
    clock = ManualClock()
    p = provider(token_server, pki, clock, ca_file=None)
    with pytest.raises(TokenError) as info:
        asyncio.run(p.token())
    assert "TLS certificate not trusted" in str(info.value)
    assert token_server.count() == 0
