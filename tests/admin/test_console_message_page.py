"""The console's message page: the client in words (no Python reprs) and only the actions that apply.

A real ``pipeline serve`` with the console and a recording sink as the smarthost; the pages are
read over HTTP after a login. Every action is a ``console.<action>`` event naming the user.
"""

from __future__ import annotations

import re
import smtplib
from pathlib import Path

import httpx

from mailpipe.core.intake.auth import hash_password
from tests.core.helpers import make_message
from tests.peers.mailpipe import MailpipeProcess
from tests.peers.net import free_port, wait_until
from tests.peers.sink import RecordingSink

from .helpers import base_config

USER, PASSWORD = "admin", "message page password"


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, html
    return m.group(1)


def forms(html: str, mid: str) -> list[str]:
    """The actions offered on the page of ``mid``."""
    return re.findall(rf'action="/queues/{mid}/(\w+)"', html)


def facts(html: str) -> str:
    m = re.search(r'<dl class="facts">(.*?)</dl>', html, re.S)
    assert m, html
    return m.group(1)


def test_message_page_shows_only_the_actions_that_apply(tmp_path: Path) -> None:
    port = free_port()
    with RecordingSink("127.0.1.46") as sink:
        sink.behaviour.rcpt["later@example.net"] = "450 4.2.1 try later"
        config = base_config(tmp_path, [
            {"smarthost": {"server": sink.host, "port": sink.port, "tls": "none"}},
            {"retry": {"every": "1h", "expire_after": "2d"}},
            {"console": {"listen": f"127.0.0.1:{port}",
                         "users": [{"username": USER, "password_hash": hash_password(PASSWORD)}]}}])
        gw = MailpipeProcess(tmp_path / "gw", config)
        with gw, httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            ids = {}
            with smtplib.SMTP(*gw.address, timeout=10) as smtp:
                smtp.ehlo("client.test")
                for rcpt in ("done@example.net", "later@example.net"):
                    smtp.mail("alice@example.org")
                    smtp.rcpt(rcpt)
                    ids[rcpt] = smtp.data(make_message(rcpt))[1].decode().rsplit(" ", 1)[-1]
            done, waiting = ids["done@example.net"], ids["later@example.net"]
            wait_until(lambda: [m["id"] for m in gw.cli_json("queue", "list")] == [waiting]
                       and gw.cli_json("queue", "list")[0]["recipients"] == {"deferred": 1}, 15, "one deferred")
            page = client.get("/login")
            r = client.post("/login", data={"csrf": csrf_of(page.text), "username": USER, "password": PASSWORD})
            assert r.status_code == 303, r.text

            finished = client.get(f"/queues/{done}").text
            assert forms(finished, done) == [] and 'id="no-actions"' in finished
            shown = facts(finished)
            for repr_word in ("False", "True", "None", "{", "'"):
                assert repr_word not in shown, (repr_word, shown)
            assert "<dd>127.0.0.1</dd>" in shown and "<dt>TLS</dt><dd>no</dd>" in shown
            assert "<dt>HELO name</dt><dd>client.test</dd>" in shown

            deferred = client.get(f"/queues/{waiting}").text
            assert forms(deferred, waiting) == ["retry", "hold", "delete"]
            token = csrf_of(deferred)
            assert client.post(f"/queues/{waiting}/hold", data={"csrf": token}).status_code == 303
            assert forms(client.get(f"/queues/{waiting}").text, waiting) == ["release", "delete"]
            r = client.post(f"/queues/{done}/release", data={"csrf": token})
            assert r.status_code == 303 and "nothing to release" in client.get(f"/queues/{done}").text
            events = gw.cli_json("events", "--kind", "console")
    assert [(e["kind"], e["data"]) for e in events] == [("console.hold", {"message": waiting, "user": USER})]
    assert events[0]["text"] == f"{waiting}: hold by console user {USER}"
