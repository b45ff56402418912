"""The console over HTTPS: cookies are marked Secure (and still HttpOnly, SameSite=Strict)."""

from __future__ import annotations

import ssl

import httpx

from tests.console.conftest import CONFIG, HOSTNAME, PASSWORD, USER
from tests.console.test_console_http import csrf_of
from tests.peers.mailpipe import MailpipeProcess
from tests.peers.net import free_port
from tests.peers.sink import RecordingSink


def test_https_console_sets_secure_cookies(workdir, pki, password_hash):
    with RecordingSink() as sink:
        smtp, console, metrics = free_port(), free_port(), free_port()
        proc = MailpipeProcess(workdir / "mailpipe", {"listen": [f"127.0.0.1:{smtp}"]})
        text = CONFIG.format(
            hostname=HOSTNAME, state=workdir / "mailpipe" / "state", smtp=smtp, sink=sink.port, every="15m",
            console=console, metrics=metrics, user=USER, hash=password_hash,
        ).replace(f"      listen: 127.0.0.1:{console}\n",
                  f"      listen: 127.0.0.1:{console}\n      cert: {pki.cert_file}\n      key: {pki.key_file}\n"
                  "      secure_cookies: auto\n")
        proc.config_path.write_text(text)
        proc.start()
        try:
            trust = ssl.create_default_context(cafile=str(pki.ca_file))
            with httpx.Client(base_url=f"https://127.0.0.1:{console}", verify=trust) as client:
                page = client.get("/login")
                cookie = page.headers["set-cookie"].lower()
                assert "secure" in cookie and "httponly" in cookie and "samesite=strict" in cookie
                ok = client.post("/login", data={"csrf": csrf_of(page.text), "username": USER, "password": PASSWORD})
                assert ok.status_code == 303 and "secure" in ok.headers["set-cookie"].lower()
                assert client.get("/queues").status_code == 200
            try:
                httpx.get(f"http://127.0.0.1:{console}/login", timeout=5)
                plain_refused = False
            except httpx.HTTPError:
                plain_refused = True
            assert plain_refused  # plain HTTP is not served on the HTTPS port
        finally:
            proc.stop()
