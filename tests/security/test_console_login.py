"""The console's login under attack: anonymous floods must not log the admin out, guessers must not lock them out.

Issue 14, findings 5 and 6 (and the console's fail2ban line). Before: every anonymous visit
to /login made a server-side session, so 10,050 visits evicted the admin's; five wrong
passwords for ``admin`` from one address locked the real admin out from everywhere (429).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.console.conftest import PASSWORD, USER
from tests.peers.mailpipe import MailpipeProcess
from tests.peers.net import free_port, wait_until

from .conftest import banned_hosts

FLOOD = 10_050  # more than the console's 10,000 sessions


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, html
    return m.group(1)


def login(client: httpx.Client, password: str = PASSWORD, user: str = USER) -> httpx.Response:
    page = client.get("/login")
    return client.post("/login", data={"csrf": csrf_of(page.text), "username": user, "password": password})


def from_address(base: str, source: str) -> httpx.Client:
    """An HTTP client whose connections come from ``source`` (a loopback address)."""
    return httpx.Client(base_url=base, timeout=30, transport=httpx.HTTPTransport(local_address=source))


@pytest.fixture
def console(mailpipe_factory: Callable[..., MailpipeProcess],
            console_hash: str) -> Iterator[tuple[MailpipeProcess, str]]:
    """A gateway serving only the console (user ``admin``; 5 failures per address within 5m, then 429)."""
    port = free_port()
    gw = mailpipe_factory({
        "hostname": "gw.test",
        "chain": [{"console": {"listen": f"127.0.0.1:{port}", "login_attempts": 5, "login_pause": "5m",
                               "users": [{"username": USER, "password_hash": console_hash}]}}],
    })
    with gw:
        wait_until(lambda: "web console on" in gw.log_text(), 20, "the console listening", gw.log_text)
        yield gw, f"http://127.0.0.1:{port}"


async def flood(port: int, count: int, parallel: int = 4) -> tuple[int, int]:
    """``count`` anonymous GET /login, pipelined over ``parallel`` connections (a fast client, as an attacker's).

    Returns how many were answered 200 and how many of the answers set a console session cookie.
    """
    request = b"GET /login HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

    def occurrences(tail: bytes, chunk: bytes, needle: bytes) -> int:
        return (tail + chunk).count(needle) - tail.count(needle)

    async def connection(n: int) -> tuple[int, int]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        ok = sessions = 0
        tail = b""

        async def read() -> None:
            nonlocal ok, sessions, tail
            while ok < n:
                chunk = await reader.read(1 << 20)
                if not chunk:
                    break
                ok += occurrences(tail, chunk, b"HTTP/1.1 200")
                sessions += occurrences(tail, chunk.lower(), b"set-cookie: mailpipe_console=")
                tail = chunk[-64:].lower()

        reading = asyncio.create_task(read())
        for sent in range(0, n, 100):
            writer.write(request * min(100, n - sent))
            await writer.drain()
        await asyncio.wait_for(reading, 300)
        writer.close()
        return ok, sessions

    results = await asyncio.gather(*(connection(count // parallel + (i < count % parallel)) for i in range(parallel)))
    return sum(r[0] for r in results), sum(r[1] for r in results)


def test_an_anonymous_flood_does_not_log_the_admin_out(console: tuple[MailpipeProcess, str]) -> None:
    """10,050 anonymous visits to /login: the admin's session still works, and no anonymous state was stored."""
    _, base = console
    with httpx.Client(base_url=base, timeout=30) as admin:
        assert login(admin).status_code == 303
        started = time.monotonic()
        answered, sessions = asyncio.run(flood(int(base.rpartition(":")[2]), FLOOD))
        took = time.monotonic() - started
        after = admin.get("/queues")
        assert after.status_code == 200 and "Queues" in after.text, (after.status_code, after.headers, sessions)
        assert answered == FLOOD and sessions == 0, (answered, sessions)
    print(f"\nfinding 5: {FLOOD} anonymous GET /login in {took:.1f}s; the admin's session still answers "
          f"{after.status_code}")


def test_the_login_form_token_is_a_signed_double_submit(console: tuple[MailpipeProcess, str]) -> None:
    """The login POST needs the form's token in its cookie too: forged, swapped or cookie-less tokens get 403."""
    _, base = console
    with httpx.Client(base_url=base, timeout=30) as client:
        page = client.get("/login")
        cookie = page.headers["set-cookie"].lower()
        assert cookie.startswith("mailpipe_login=") and "httponly" in cookie and "samesite=strict" in cookie
        token = csrf_of(page.text)
        other = csrf_of(httpx.get(f"{base}/login").text)  # a valid token of another visitor
        for forged in ("forged", other, token.rpartition(".")[0] + ".0" * 32):
            r = client.post("/login", data={"csrf": forged, "username": USER, "password": PASSWORD})
            assert r.status_code == 403, forged
    with httpx.Client(base_url=base, timeout=30) as bare:  # the right form token without its cookie
        r = bare.post("/login", data={"csrf": token, "username": USER, "password": PASSWORD})
        assert r.status_code == 403


def test_a_guesser_cannot_lock_the_admin_out(console: tuple[MailpipeProcess, str]) -> None:
    """Five wrong passwords for ``admin`` from 127.0.0.2: that address gets 429; the admin from 127.0.0.1 logs in.

    The admin's login is only slowed (at most a few seconds), and each failure is a log line
    from which the documented fail2ban filter takes 127.0.0.2.
    """
    gw, base = console
    with from_address(base, "127.0.0.2") as guesser:
        codes = [login(guesser, f"guess {i}").status_code for i in range(5)]
        blocked = login(guesser)  # even the right password, from the guessing address
    assert codes == [401] * 5 and blocked.status_code == 429, (codes, blocked.status_code)
    with from_address(base, "127.0.0.1") as admin:
        started = time.monotonic()
        ok = login(admin)
        waited = time.monotonic() - started
    assert ok.status_code == 303 and ok.headers["location"] == "/queues", ok.status_code
    assert waited < 10, waited
    log = gw.log_text()
    assert banned_hosts(log) == ["127.0.0.2"] * 5, [ln for ln in log.splitlines() if "console login" in ln]
    print(f"\nfinding 6: 5 wrong passwords from 127.0.0.2 -> {codes}, then {blocked.status_code} for it; "
          f"the admin from 127.0.0.1 got {ok.status_code} after {waited:.1f}s")

