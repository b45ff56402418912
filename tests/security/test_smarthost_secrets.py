"""A smarthost that echoes the client's AUTH exchange in its 535: no form of the secret is kept or shown.

Issue 14, finding 4. The smarthost here is a real aiosmtpd server whose mechanisms answer
``535`` with everything the client sent — each base64 blob as it arrived and decoded — for
AUTH PLAIN, LOGIN, CRAM-MD5 and XOAUTH2. Every blob the client sent, and the secret inside
it, must then be absent from the serve log, ``pipeline queue show/log/events --json``, every
file of the state folder (the SQLite file and its WAL) and the console pages. Before, the
PLAIN and XOAUTH2 blobs and the CRAM-MD5 response went everywhere.
"""

from __future__ import annotations

import base64
import re
import smtplib
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from aiosmtpd.smtp import SMTP, AuthResult

from tests.console.conftest import PASSWORD as CONSOLE_PASSWORD
from tests.console.conftest import USER as CONSOLE_USER
from tests.peers.mailpipe import MailpipeProcess
from tests.peers.net import free_port, wait_until
from tests.peers.sink import RecordingSink, _Handler

SECRET = "Sm4rth0st-Secret-xyzzy-42"
LOGIN = "gateway-1"  # "\0gateway-1\0" is 11 bytes: the secret is not aligned to base64's 3-byte groups in the blob
MECHANISMS = ["plain", "login", "cram-md5", "xoauth2"]


def shown(blob: bytes) -> str:
    """A blob decoded, its NUL and ^A separators made visible (the way a server would print it)."""
    return base64.b64decode(blob).replace(b"\0", b"|").replace(b"\x01", b"|").decode()


class EchoingHandler(_Handler):
    """AUTH mechanisms that refuse every login with a 535 repeating what the client sent (base64 and decoded)."""

    def __init__(self, sink: RecordingSink) -> None:
        super().__init__(sink)
        self.sent: list[bytes] = []

    def refuse(self, *blobs: bytes) -> AuthResult:
        self.sent += blobs
        echo = " ".join(f"{b.decode()} ({shown(b)})" for b in blobs)
        return AuthResult(success=False, handled=False, message=f"535 5.7.8 credentials rejected: {echo}")

    async def auth_PLAIN(self, server: SMTP, args: list[str]) -> AuthResult:
        return self.refuse(args[1].encode())

    async def auth_LOGIN(self, server: SMTP, args: list[str]) -> AuthResult:
        password = await server.challenge_auth("Password:")
        return self.refuse(args[1].encode(), base64.b64encode(password))  # the password line, as it was sent

    async def auth_CRAM__MD5(self, server: SMTP, args: list[str]) -> AuthResult:
        response = await server.challenge_auth("<1896.697170952@sink.test>")
        return self.refuse(base64.b64encode(response))

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        return self.refuse(args[1].encode())


def forms(blobs: list[bytes]) -> set[bytes]:
    """Every form of the credentials the client sent: each blob, decoded, and the secret parts inside."""
    out = {SECRET.encode(), base64.b64encode(SECRET.encode())}
    for blob in blobs:
        decoded = base64.b64decode(blob)
        if decoded == LOGIN.encode():  # AUTH LOGIN's user name line: not a secret
            continue
        out |= {blob, blob.rstrip(b"="), decoded, shown(blob).encode()}
        if decoded.startswith(LOGIN.encode() + b" "):  # CRAM-MD5: "user digest", the digest is a secret too
            out.add(decoded.partition(b" ")[2])
    return {f for f in out if f}


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_an_echoed_auth_exchange_is_nowhere(mechanism: str, mailpipe_factory: Callable[..., MailpipeProcess],
                                            workdir: Path, console_hash: str) -> None:
    with RecordingSink("127.0.0.1", auth={}) as sink:
        handler = EchoingHandler(sink)
        sink.controller.handler = handler
        secret_key = "token" if mechanism == "xoauth2" else "password"
        console = free_port()
        gw = mailpipe_factory({
            "hostname": "gw.test",
            "chain": [
                {"smarthost": {"server": f"127.0.0.1:{sink.port}", "tls": "none", "allow_plaintext_auth": True,
                               "auth": {"mode": "login", "mechanism": mechanism, "username": LOGIN,
                                        secret_key: "${SMARTHOST_SECRET}"}}},
                {"retry": {"every": "10m"}},
                {"console": {"listen": f"127.0.0.1:{console}",
                             "users": [{"username": CONSOLE_USER, "password_hash": console_hash}]}},
            ],
        }, env={"SMARTHOST_SECRET": SECRET})
        with gw:
            host, port = gw.address
            with smtplib.SMTP(host, port, timeout=10) as client:
                client.sendmail("alice@example.org", ["bob@remote.test"], b"Subject: echo\r\n\r\nHello.\r\n")
            wait_until(lambda: [r["recipients"] for r in gw.cli_json("queue", "list")] == [{"deferred": 1}], 30,
                       "the message deferred by the refused login", gw.log_text)
            assert handler.sent, "the smarthost saw no AUTH"
            mid = gw.cli_json("queue", "list")[0]["id"]
            outputs = [gw.cli(*args, "--json").stdout for args in
                       (("queue", "show", mid), ("log",), ("events",), ("route", "bob@remote.test"))]
            assert "credentials rejected" in outputs[0], outputs[0]  # the server's text is kept, scrubbed
            pages = console_pages(f"http://127.0.0.1:{console}", mid)
        everything = {"serve log": gw.log_text().encode(), **{f"cli {i}": o.encode() for i, o in enumerate(outputs)},
                      **{f"console {p}": text.encode() for p, text in pages.items()}}
        everything |= {str(p): p.read_bytes() for p in (workdir / "mailpipe").rglob("*")
                       if p.is_file() and p.name not in ("mailpipe.yaml", "serve.log")}
    leaks = [(where, form) for where, data in everything.items() for form in forms(handler.sent) if form in data]
    print(f"\nfinding 4 ({mechanism}): {len(handler.sent)} blob(s) echoed in the 535; "
          f"{len(forms(handler.sent))} forms looked for in {len(everything)} places: {len(leaks)} found")
    assert leaks == []


def console_pages(base: str, mid: str) -> dict[str, str]:
    """The console pages that show replies and events, as a logged-in user sees them."""
    with httpx.Client(base_url=base, timeout=20) as client:
        page = client.get("/login")
        token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        client.post("/login", data={"csrf": token, "username": CONSOLE_USER, "password": CONSOLE_PASSWORD})
        paths = ["/queues", f"/queues/{mid}", "/log", f"/log?message={mid}", "/events"]
        pages = {p: client.get(p).text for p in paths}
    assert mid in pages[f"/queues/{mid}"], pages[f"/queues/{mid}"][:500]
    return pages
