"""With ``workers: 2``: the console (served by worker 1) shows the mail of every worker's queue file, and
two workers on one PostgreSQL queue share it as nodes do (every message delivered once). docs/workers.md.
"""

from __future__ import annotations

import re

import httpx
import pytest

from mailpipe.core.intake.auth import hash_password
from tests.console.conftest import PASSWORD, USER
from tests.peers.net import free_port, wait_until
from tests.peers.postgres import PostgresPeer
from tests.peers.sink import RecordingSink
from tests.postgres.helpers import attempts, queued
from tests.workers.helpers import relay_config, serving
from tests.workers.test_serve_workers import queue_files, send_many, subjects


@pytest.fixture
def sink():
    with RecordingSink() as s:
        yield s


def login(client: httpx.Client) -> None:
    """Log in to the console (its login form with its CSRF token)."""
    page = client.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token, page.text
    reply = client.post("/login", data={"csrf": token.group(1), "username": USER, "password": PASSWORD})
    assert reply.status_code in (200, 302, 303), reply.status_code


def test_the_console_shows_the_mail_of_every_worker(mailpipe_factory, sink) -> None:
    """Mail deferred in both workers' files: the console's queue page lists every message, a message of
    either file opens, and its Retry button's poke reaches the worker that holds it."""
    sink.behaviour.data = "451 4.3.0 try later"
    port = free_port()
    config = relay_config(sink)
    config["chain"][1] = {"retry": {"every": "1h", "expire_after": "1d"}}
    config["chain"].append({"console": {"listen": f"127.0.0.1:{port}",
                                        "users": [{"username": USER, "password_hash": hash_password(PASSWORD)}]}})
    gw = mailpipe_factory(config).start()
    serving(gw, 2)
    ids = send_many(gw, 12, "shown")
    wait_until(lambda: len(gw.cli_json("queue", "list", "--state", "deferred")) == 12, 30, "12 deferred")
    assert all(n > 0 for n in queue_files(gw).values()), queue_files(gw)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10, follow_redirects=True) as client:
        login(client)
        page = client.get("/queues", params={"state": "deferred"}).text
        assert set(re.findall(r'data-id="([^"]+)"', page)) == set(ids)
        for mid in ids:
            assert client.get(f"/queues/{mid}").status_code == 200, mid
    sink.behaviour.data = None
    assert gw.cli_json("queue", "retry", "--all")["count"] == 12
    wait_until(lambda: subjects(sink) == {f"shown {i}" for i in range(12)}, 30, "all delivered after the poke")
    assert gw.stop() == 0


def test_two_workers_on_one_postgres_queue_deliver_every_message_once(mailpipe_factory, sink,
                                                                      postgres: PostgresPeer) -> None:
    """With the postgres queue there is no file per worker: both workers store into and deliver from the one
    database, and every message is delivered exactly once, by the workers together."""
    dsn = postgres.create_database()
    config = relay_config(sink, queue={"postgres": {"dsn": dsn, "lease": "5s", "pool_size": 4}})
    gw = mailpipe_factory(config).start()
    serving(gw, 2)
    send_many(gw, 30, "shared")
    wait_until(lambda: len(sink.messages) >= 30, 60, "30 delivered", gw.log_text)
    wait_until(lambda: not queued(dsn), 30, "every delivery recorded")
    assert sorted(subjects(sink)) == sorted(f"shared {i}" for i in range(30))
    assert len(sink.messages) == 30
    lines = attempts(dsn)
    assert len(lines) == 30 and {a.outcome for a in lines} == {"delivered"}
    started = gw.cli_json("events", "--kind", "gateway.started")
    assert sorted(e["data"].get("worker") for e in started) == [1, 2]
    assert not list((gw.config_path.parent).rglob("queue*.sqlite3")), "no sqlite file with a postgres queue"
    assert gw.stop() == 0


def test_a_sending_limit_holds_for_every_worker_together(mailpipe_factory, sink) -> None:
    """``limits`` of 3 per hour on the smarthost, 8 messages accepted by both workers: 3 are delivered in all
    (the counters live in worker 1's file, shared by both), the rest wait with the limit's reply."""
    config = relay_config(sink)
    config["chain"][0]["smarthost"]["limits"] = [{"per": "account", "max": 3, "every": "1h"}]
    gw = mailpipe_factory(config).start()
    serving(gw, 2)
    send_many(gw, 8, "limited")
    wait_until(lambda: len(gw.cli_json("queue", "list", "--state", "deferred")) == 5, 30, "5 waiting", gw.log_text)
    assert all(n > 0 for n in queue_files(gw).values()), queue_files(gw)
    assert len(sink.messages) == 3
    for row in gw.cli_json("queue", "list", "--state", "deferred"):
        reply = gw.cli_json("queue", "show", row["id"])["recipients"][0]["last_reply"]
        assert reply.startswith("451 4.7.0 limit 3/h for "), reply
    assert gw.stop() == 0
