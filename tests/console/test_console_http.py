"""The console over plain HTTP (httpx): login, CSRF, throttling, queue actions, Save errors, metrics."""

from __future__ import annotations

import re

import httpx

from tests.console.conftest import PASSWORD, USER, ConsoleSetup, poll


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, html
    return m.group(1)


def login(client: httpx.Client, password: str = PASSWORD) -> httpx.Response:
    page = client.get("/login")
    return client.post("/login", data={"csrf": csrf_of(page.text), "username": USER, "password": password})


def test_login_csrf_and_cookies(console_setup: ConsoleSetup) -> None:
    with httpx.Client(base_url=console_setup.console_url) as client:
        assert client.get("/queues").headers["location"] == "/login"
        page = client.get("/login")
        cookie = page.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        assert "content-security-policy" in page.headers
        # a POST without the session's token is refused, even with the right password
        bad = client.post("/login", data={"csrf": "forged", "username": USER, "password": PASSWORD})
        assert bad.status_code == 403
        wrong = login(client, "not the password")
        assert wrong.status_code == 401 and "Wrong user name or password" in wrong.text
        ok = login(client)
        assert ok.status_code == 303 and ok.headers["location"] == "/queues"
        queues = client.get("/queues")
        assert queues.status_code == 200 and "Queues" in queues.text
        assert PASSWORD not in queues.text
        # a logged-in POST without CSRF is refused too
        assert client.post("/queues/retry-all", data={}).status_code == 403


def test_login_throttled(console_setup: ConsoleSetup) -> None:
    with httpx.Client(base_url=console_setup.console_url) as client:
        codes = [login(client, f"guess {i}").status_code for i in range(6)]
        assert codes[:5] == [401] * 5 and codes[5] == 429
        assert login(client).status_code == 429  # even the right password waits out the pause


def test_queue_actions_and_metrics(console_setup: ConsoleSetup) -> None:
    sink = console_setup.sink
    sink.behaviour.rcpt["bob@dest.test"] = "450 4.2.0 busy"
    console_setup.send(["bob@dest.test"])
    with httpx.Client(base_url=console_setup.console_url) as client:
        login(client)
        row = poll(lambda: re.search(r'data-id="([^"]+)".*?deferred', client.get("/queues?state=deferred").text,
                                     re.S), 20, "a deferred message on the Queues page")
        mid = row.group(1)
        page = client.get(f"/queues/{mid}")
        assert "bob@dest.test" in page.text and "450" in page.text
        token = csrf_of(page.text)
        assert client.post(f"/queues/{mid}/hold", data={"csrf": token}).status_code == 303
        assert "held" in client.get(f"/queues/{mid}").text
        del sink.behaviour.rcpt["bob@dest.test"]
        assert client.post(f"/queues/{mid}/release", data={"csrf": token}).status_code == 303
        sink.wait_for(1)
        log = poll(lambda: (t := client.get("/log", params={"recipient": "bob@dest.test",
                                                           "outcome": "delivered"}).text) and mid in t and t,
                   20, "the delivery in the message log")
        assert "delivered" in log
        events = client.get("/events").text
        assert "console.hold" in events and "console.release" in events
        stats = client.get("/stats").text
        assert "<svg" in stats and "Queue depth" in stats
    metrics = httpx.get(console_setup.metrics_url).text
    assert "mailpipe_messages_accepted_total 1.0" in metrics
    assert 'mailpipe_recipients_total{outcome="delivered"} 1.0' in metrics
    assert 'mailpipe_recipients_total{outcome="deferred"} 1.0' in metrics
    assert re.search(r'mailpipe_delivery_errors_total\{outcome="deferred",route="smarthost:[^"]+"\} 1.0', metrics)
    assert "mailpipe_delivery_latency_seconds_count 1.0" in metrics
    assert "mailpipe_queue_messages 0.0" in metrics


def test_outgoing_bad_value_writes_nothing(console_setup: ConsoleSetup) -> None:
    path = console_setup.mailpipe.config_path
    before = path.read_text()
    with httpx.Client(base_url=console_setup.console_url) as client:
        login(client)
        page = client.get("/outgoing").text
        form = dict(re.findall(r'<input name="(\w+)" id="\w+" value="([^"]*)"', page))
        form.update(csrf=csrf_of(page), version=re.search(r'name="version" value="(\w+)"', page).group(1),
                    send_via="smarthost", auth_mode="login", send_immediately="on", retry_every="soon")
        r = client.post("/outgoing/save", data=form)
        assert r.status_code == 422
        assert 'id="error-retry_every"' in r.text
    assert path.read_text() == before
