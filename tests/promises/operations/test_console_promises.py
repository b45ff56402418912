"""docs/console.md through a running ``pipeline serve`` and plain HTTP (httpx): Delete, Retry all, session
time-out, a new session id at login, Save refused after someone else edited the file, the Message Log's
``until``.

The console user and password are those of tests/console; mail goes to a RecordingSink as the smarthost.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.console.conftest import PASSWORD, USER
from tests.peers.mailpipe import MailpipeProcess
from tests.peers.net import free_port, wait_until
from tests.peers.sink import RecordingSink
from tests.promises.operations.helpers import submit, wait_outcome, write_history

COOKIE = "mailpipe_console"


@dataclass
class Console:
    """A running gateway with the console, and its sink."""

    gw: MailpipeProcess
    sink: RecordingSink
    url: str


@pytest.fixture
def sink() -> Iterator[RecordingSink]:
    with RecordingSink() as s:
        yield s


@pytest.fixture
def console_factory(mailpipe_factory, sink: RecordingSink, password_hash: str) -> Callable[..., Console]:
    """``make(**console_options)``: ``pipeline serve`` with smarthost (the sink), retry and the console."""

    def make(**options: Any) -> Console:
        port = free_port()
        gw = mailpipe_factory({
            "hostname": "gw.console.test",
            "chain": [
                {"smarthost": {"server": f"127.0.0.1:{sink.port}", "tls": "none"}},
                {"retry": {"every": "15m", "expire_after": "2d"}},
                {"console": {"listen": f"127.0.0.1:{port}",
                             "users": [{"username": USER, "password_hash": password_hash}], **options}},
            ],
        }).start()
        return Console(gw, sink, f"http://127.0.0.1:{port}")

    return make


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, html
    return m.group(1)


def flash_of(html: str) -> str | None:
    m = re.search(r'<p class="flash" id="flash">([^<]*)</p>', html)
    return m.group(1) if m else None


def log_in(client: httpx.Client) -> str:
    """Log in with the right password; the session id the console issued."""
    page = client.get("/login")
    r = client.post("/login", data={"csrf": csrf_of(page.text), "username": USER, "password": PASSWORD})
    assert (r.status_code, r.headers["location"]) == (303, "/queues"), r.text
    return r.cookies[COOKIE]


def with_sid(url: str, sid: str) -> httpx.Response:
    """GET with exactly this session cookie (no cookie jar: the browser's expiry plays no part)."""
    return httpx.get(url, headers={"Cookie": f"{COOKIE}={sid}"}, timeout=10)


def deferred(console: Console, rcpt: str) -> str:
    """Queue a message to ``rcpt`` that the sink defers (450); its queue id once the deferral is recorded."""
    console.sink.behaviour.rcpt[rcpt] = "450 4.2.0 mailbox busy"
    mid = submit(console.gw, [rcpt])
    wait_outcome(console.gw, mid, rcpt)
    return mid


def test_delete_removes_the_message_without_delivery_or_bounce(console_factory) -> None:
    """Delete on a message's page: gone from the queue, never delivered, no bounce, a ``console.delete`` event."""
    console = console_factory()
    gw, sink = console.gw, console.sink
    mid = deferred(console, "bob@dest.test")
    with httpx.Client(base_url=console.url, timeout=10) as client:
        log_in(client)
        page = client.get(f"/queues/{mid}")
        assert page.status_code == 200 and 'action="/queues/' + mid + '/delete"' in page.text
        r = client.post(f"/queues/{mid}/delete", data={"csrf": csrf_of(page.text)})
        assert (r.status_code, r.headers["location"]) == (303, "/queues")
        queues = client.get("/queues")
        assert flash_of(queues.text) == f"deleted {mid}"
        assert f'data-id="{mid}"' not in queues.text
        assert client.get(f"/queues/{mid}").status_code == 404
    assert gw.cli_json("queue", "list") == []
    shown = gw.cli("queue", "show", mid, check=False)
    assert (shown.returncode, shown.stderr) == (1, f"error: no message {mid} in the queue\n")
    [event] = gw.cli_json("events", "--kind", "console.delete")
    assert (event["text"], event["data"]) == (f"{mid}: delete by console user {USER}", {"message": mid, "user": USER})
    # The sink would take it now; a later message is delivered and the deleted one never is, nor any bounce.
    sink.behaviour.rcpt.clear()
    assert gw.cli_json("queue", "retry", "--all")["count"] == 0
    later = submit(gw, ["carol@dest.test"])
    wait_outcome(gw, later, "carol@dest.test")
    assert [(m.mail_from, m.rcpt_tos) for m in sink.wait_for(1)] == [("alice@origin.test", ["carol@dest.test"])]


def test_retry_all_makes_every_deferred_recipient_due_at_once(console_factory) -> None:
    """"Retry all now" delivers every deferred message at once, long before the 15m retry interval."""
    console = console_factory()
    first = deferred(console, "bob@dest.test")
    second = deferred(console, "carol@dest.test")
    console.sink.behaviour.rcpt.clear()
    with httpx.Client(base_url=console.url, timeout=10) as client:
        log_in(client)
        page = client.get("/queues?state=deferred")
        assert f'data-id="{first}"' in page.text and f'data-id="{second}"' in page.text
        r = client.post("/queues/retry-all", data={"csrf": csrf_of(page.text)})
        assert (r.status_code, r.headers["location"]) == (303, "/queues")
        assert flash_of(client.get("/queues").text) == "retry now: 2 recipient(s) due"
    got = console.sink.wait_for(2, timeout=20)
    assert sorted(m.rcpt_tos[0] for m in got) == ["bob@dest.test", "carol@dest.test"]
    wait_until(lambda: console.gw.cli_json("queue", "list") == [], 20, "an empty queue")
    for mid in (first, second):
        actions = [a["action"] for a in console.gw.cli_json("log", "-m", mid)]
        assert actions == ["deferred", "delivered"]


def test_session_times_out_after_session_timeout_without_a_request(console_factory) -> None:
    """session_timeout: 2s: requests less than 2s apart keep the session; 2s without one ends it for good."""
    console = console_factory(session_timeout="2s")
    with httpx.Client(base_url=console.url, timeout=10) as client:
        sid = log_in(client)
    started = time.monotonic()
    while time.monotonic() - started < 3.0:  # bounded: longer than the time-out, one request every 0.5s
        r = with_sid(f"{console.url}/queues", sid)
        assert r.status_code == 200, "an active session was logged out"
        time.sleep(0.5)  # the pace of a user clicking, not a wait for work
    time.sleep(2.5)  # idle for longer than session_timeout
    r = with_sid(f"{console.url}/queues", sid)
    assert (r.status_code, r.headers["location"]) == (303, "/login")
    assert with_sid(f"{console.url}/queues", sid).status_code == 303  # the id stays dead


def test_login_issues_a_new_session_id(console_factory) -> None:
    """Session fixation: the id a client had before logging in is not the logged-in one and stays logged out."""
    console = console_factory()
    with httpx.Client(base_url=console.url, timeout=10) as client:
        page = client.get("/login")
        assert COOKIE not in page.cookies  # no session before login (issue 14): an attacker can only plant one
        before = "planted-by-an-attacker"
        client.cookies.set(COOKIE, before)
        r = client.post("/login", data={"csrf": csrf_of(page.text), "username": USER, "password": PASSWORD})
        assert r.status_code == 303
        after = r.cookies[COOKIE]
    assert after != before
    assert with_sid(f"{console.url}/queues", after).status_code == 200
    r = with_sid(f"{console.url}/queues", before)  # an id planted before the login gains nothing
    assert (r.status_code, r.headers["location"]) == (303, "/login")


def test_save_refused_after_someone_else_edited_the_file(console_factory) -> None:
    """Save with a page opened before another edit of the file: refused (422, "reload the page"), nothing
    written, the other edit kept, nothing applied."""
    console = console_factory()
    path = console.gw.config_path
    with httpx.Client(base_url=console.url, timeout=10) as client:
        log_in(client)
        page = client.get("/outgoing").text
        form = dict(re.findall(r'<input name="(\w+)" id="\w+" value="([^"]*)"', page))
        form.update(csrf=csrf_of(page), version=re.search(r'name="version" value="(\w+)"', page).group(1),
                    send_via="smarthost", send_immediately="on", retry_every="30m")
        edited = path.read_text() + "# edited by someone else\n"
        path.write_text(edited)
        r = client.post("/outgoing/save", data=form)
        assert r.status_code == 422
        assert re.search(r'<p class="error" id="form-error">([^<]*)</p>', r.text).group(1) == (
            "the configuration file was changed since this page was opened; reload the page and make your "
            "changes again")
    assert path.read_text() == edited
    assert "every: 15m" in edited
    assert console.gw.cli_json("events", "--kind", "console.saved") == []
    assert "config.reloaded" not in console.gw.log_text()


def test_message_log_until_and_since(console_factory, sink: RecordingSink, workdir: Path) -> None:
    """The Message Log's ``until`` keeps attempts up to that time, ``since`` those from it (durations back from
    now and UTC date/times), on a history with one attempt 3 hours ago and one 1 hour ago."""
    now = time.time()
    write_history(workdir, workdir / "mailpipe" / "state", sink.port,
                  [(now - 3 * 3600, ["bob@dest.test"]), (now - 3600, ["carol@dest.test"])])
    console = console_factory()
    between = time.strftime("%Y-%m-%dT%H:%M", time.gmtime(now - 2 * 3600))
    with httpx.Client(base_url=console.url, timeout=10) as client:
        log_in(client)

        def shown(**params: str) -> list[str]:
            """The recipients of the Message Log's rows, as shown (newest first)."""
            page = client.get("/log", params=params)
            assert page.status_code == 200
            assert 'class="invalid"' not in page.text
            return re.findall(r'<tr><td>[^<]*</td><td><a href="/queues/\w+">\w+</a></td><td>[^<]*</td><td>([^<]*)</td>',
                              page.text)

        assert shown() == ["carol@dest.test", "bob@dest.test"]
        assert shown(until="2h") == ["bob@dest.test"]
        assert shown(since="2h") == ["carol@dest.test"]
        assert shown(until=between) == ["bob@dest.test"]
        assert shown(since=between) == ["carol@dest.test"]
        assert shown(since="4h", until="30m") == ["carol@dest.test", "bob@dest.test"]
        assert shown(until="4h") == []
