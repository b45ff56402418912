"""``pipeline queue migrate``: a stopped node's queue moves from SQLite to PostgreSQL and back, mail and history.

Real ``pipeline serve`` nodes on both backends deliver to a recording sink that defers some
recipients with 451; the private PostgreSQL 15 cluster of ``conftest.py`` holds the shared
queue; an interrupted migration is a real connection cut (``proxy.TcpProxy``) during a COMMIT.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pytest

from mailpipe.core.cli.migrate import serving
from mailpipe.core.events import Event
from mailpipe.core.message import RecipientState
from mailpipe.core.testing.queue_helpers import new_message, update
from mailpipe.plugins.sqlite_queue import SqliteQueue
from tests.peers.mailpipe import MailpipeProcess, run_pipeline
from tests.peers.net import wait_until
from tests.peers.postgres import PostgresPeer
from tests.peers.sink import RecordingSink

from .helpers import node_config, queue_call, send, subjects
from .proxy import TcpProxy

SINK_HOST = "127.0.1.62"
LATER = "451 4.7.1 greylisted, try again later"
pytestmark = pytest.mark.timeout(240)


def sqlite_config(name: str, sink: RecordingSink) -> dict[str, Any]:
    """A node on the default SQLite queue (in its state folder), delivering through ``sink``."""
    return {
        "hostname": f"{name}.test",
        "delivery": {"shutdown_grace": "5s"},
        "chain": [{"smarthost": {"server": sink.host, "port": sink.port, "tls": "none"}},
                  {"retry": {"every": "15m", "expire_after": "2d"}}],
    }


def migrate(source: MailpipeProcess, target: MailpipeProcess, *args: str) -> subprocess.CompletedProcess[str]:
    """``pipeline queue migrate -c SOURCE --to TARGET ARGS``, whatever its exit status."""
    return run_pipeline(source.config_path, "queue", "migrate", "--to", str(target.config_path), *args,
                        check=False, timeout=120)


def migrated(source: MailpipeProcess, target: MailpipeProcess, *args: str) -> dict[str, Any]:
    """``migrate(... --json)``, which must succeed and verify; its report."""
    res = migrate(source, target, "--json", *args)
    assert res.returncode == 0, f"exit {res.returncode}\n{res.stdout}\n{res.stderr}"
    report = json.loads(res.stdout)
    assert report["verified"] and not report["problems"], report
    return report


def state_of(node: MailpipeProcess, message_id: str) -> dict[str, str]:
    """Each recipient's state, as ``pipeline queue show`` through ``node``'s configuration says."""
    return {r["address"]: r["state"] for r in node.cli_json("queue", "show", message_id)["recipients"]}


def unchanged_view(node: MailpipeProcess) -> tuple[Any, ...]:
    """What the CLI shows of a queue (its list, log, events and counts), to compare before and after."""
    stats = node.cli_json("stats", "--since", "3650d")
    stats.pop("period"), stats.pop("oldest_age")
    return (node.cli_json("queue", "list"), node.cli_json("log", "--limit", "100000"),
            node.cli_json("events", "--limit", "100000"), stats)


def live_owners(dsn: str) -> int:
    """Lease owners the database counts as alive (their node renewed them within their lease)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM owners WHERE alive_until >= "
                           "extract(epoch FROM clock_timestamp())").fetchone()
    return int(row[0]) if row else 0


def deliveries(sink: RecordingSink) -> Counter[tuple[str, str]]:
    """How often the sink received each (subject, recipient)."""
    out: Counter[tuple[str, str]] = Counter()
    for subject, message in zip(subjects(sink), sink.messages, strict=True):
        for rcpt in message.rcpt_tos:
            out[(subject, rcpt)] += 1
    return out


def fill(node: MailpipeProcess, sink: RecordingSink) -> dict[str, str]:
    """Through the running ``node``: one message delivered, one deferred (451), one half delivered, one held."""
    sink.behaviour.rcpt.update({"later@example.net": LATER, "held@example.net": LATER})
    ids = {
        "delivered": send(node, "delivered", ("bob@example.net",)),
        "deferred": send(node, "deferred", ("later@example.net",)),
        "half": send(node, "half", ("bob@example.net", "later@example.net")),
        "held": send(node, "held", ("held@example.net",)),
    }
    wanted = {"delivered": {"bob@example.net": "delivered"}, "deferred": {"later@example.net": "deferred"},
              "half": {"bob@example.net": "delivered", "later@example.net": "deferred"},
              "held": {"held@example.net": "deferred"}}
    wait_until(lambda: all(state_of(node, ids[k]) == v for k, v in wanted.items()), 30, "first attempts recorded")
    assert "1 recipient(s) held" in node.cli("queue", "hold", ids["held"]).stdout
    return ids


def deliver_the_rest(node: MailpipeProcess, sink: RecordingSink, ids: dict[str, str]) -> None:
    """The greylisting is over: ``node`` retries the deferred mail and releases the held message."""
    sink.behaviour.rcpt.clear()
    node.cli("queue", "retry", "--all")
    node.cli("queue", "release", ids["held"])
    wait_until(lambda: all(set(state_of(node, mid).values()) == {"delivered"} for mid in ids.values()), 30,
               "every recipient delivered")
    assert deliveries(sink) == Counter({("delivered", "bob@example.net"): 1, ("deferred", "later@example.net"): 1,
                                        ("half", "bob@example.net"): 1, ("half", "later@example.net"): 1,
                                        ("held", "held@example.net"): 1})


def test_sqlite_queue_moves_to_postgres_and_is_delivered_once(mailpipe_factory, pg_dsn: str):
    """Mail deferred, delivered and held on SQLite moves to PostgreSQL with its history; a node there
    delivers what waits, exactly once, and shows the old attempts and events."""
    with RecordingSink(SINK_HOST) as sink:
        old = mailpipe_factory(sqlite_config("old", sink), name="old").start()
        ids = fill(old, sink)
        assert old.stop() == 0
        new = mailpipe_factory(node_config("new", pg_dsn, sink), name="new")
        before = unchanged_view(old)

        dry = json.loads(migrate(old, new, "--dry-run", "--json").stdout)
        assert dry["dry_run"] and dry["source_counts"]["messages"] == 4 and dry["target_after"] is None
        assert queue_call(pg_dsn, lambda q: q.transfer_counts()).messages == 0

        report = migrated(old, new)
        assert report["messages"] == {"exported": 4, "stored": 4, "skipped": 0}
        assert report["source_counts"]["recipients"] == {"delivered": 2, "deferred": 2, "held": 1}
        assert report["target_after"] == report["source_counts"]
        assert report["attempts"]["stored"] == report["source_counts"]["attempts"] == 5
        assert report["events"]["stored"] == report["source_counts"]["events"] > 0
        assert unchanged_view(old) == before  # the source is left as it was

        history = new.cli_json("queue", "show", ids["half"])
        assert [(a["recipient"], a["code"], a["node"]) for a in history["attempts"]] == [
            ("bob@example.net", 250, "old.test"), ("later@example.net", 451, "old.test")]
        assert history["client"]["helo"] == "client.test"
        events = new.cli_json("events", "--limit", "1000")
        assert {"gateway.started", "gateway.stopped"} <= {e["kind"] for e in events if e["node"] == "old.test"}
        assert [e["node"] for e in events if e["kind"] == "queue.migrated"] == ["new.test"]

        new.start()
        deliver_the_rest(new, sink, ids)
        assert {a.node for a in queue_call(pg_dsn, lambda q: q.attempts(limit=100, outcome="delivered"))} == {
            "old.test", "new.test"}
        assert new.stop() == 0


def test_postgres_queue_moves_back_to_sqlite(mailpipe_factory, pg_dsn: str):
    """And back: a node's PostgreSQL queue moves to SQLite once no node renews its lease any more."""
    with RecordingSink(SINK_HOST) as sink:
        old = mailpipe_factory(node_config("pgnode", pg_dsn, sink, lease="2s"), name="pgnode").start()
        ids = fill(old, sink)
        assert old.stop() == 0
        new = mailpipe_factory(sqlite_config("back", sink), name="back")
        wait_until(lambda: live_owners(pg_dsn) == 0, 10, "the stopped node's lease to run out")

        report = migrated(old, new)
        assert report["messages"]["stored"] == 4 and report["target_after"] == report["source_counts"]
        history = new.cli_json("queue", "show", ids["deferred"])
        assert [(a["recipient"], a["code"]) for a in history["attempts"]] == [("later@example.net", 451)]
        assert state_of(new, ids["held"]) == {"held@example.net": "held"}

        new.start()
        deliver_the_rest(new, sink, ids)
        assert new.stop() == 0


def test_refused_while_a_node_serves_the_source(mailpipe_factory, pg_dsn: str, workdir: Path):
    """A running source is refused, both by its control socket and (another node's config) by live owners."""
    with RecordingSink(SINK_HOST) as sink:
        running = mailpipe_factory(sqlite_config("running", sink), name="running").start()
        send(running, "waiting")
        wait_until(lambda: serving(Path(running.config["state_dir"])), 10, "the control socket bound")
        target = mailpipe_factory(node_config("target", pg_dsn, sink), name="target")
        res = migrate(running, target)
        assert res.returncode == 1, res.stdout
        assert "serving the source" in res.stderr and "control socket" in res.stderr
        assert "nothing was copied" in res.stderr

        node1 = mailpipe_factory(node_config("node1", pg_dsn, sink, lease="30s"), name="node1").start()
        node2 = mailpipe_factory(node_config("node2", pg_dsn, sink), name="node2")  # stopped, same queue
        back = mailpipe_factory(sqlite_config("back", sink), name="back")
        res = migrate(node2, back)
        assert res.returncode == 1, res.stdout
        assert "in use by" in res.stderr and "node1.test" in res.stderr
        assert not (workdir / "back" / "state" / "queue.sqlite3").exists() or not back.cli_json("queue", "list")
        assert node1.stop() == 0 and running.stop() == 0


def test_target_with_mail_of_its_own_needs_merge(mailpipe_factory, pg_dsn: str):
    """A target that holds messages not from the source is refused; ``--merge`` adds the source's to them."""
    with RecordingSink(SINK_HOST) as sink:
        sink.behaviour.rcpt["later@example.net"] = LATER
        old = mailpipe_factory(sqlite_config("old", sink), name="old").start()
        mine = send(old, "from sqlite", ("later@example.net",))
        assert old.stop() == 0
        new = mailpipe_factory(node_config("new", pg_dsn, sink), name="new").start()
        theirs = send(new, "already on postgres", ("later@example.net",))
        wait_until(lambda: state_of(new, theirs) == {"later@example.net": "deferred"}, 20, "its deferral")
        assert new.stop() == 0
        wait_until(lambda: live_owners(pg_dsn) == 0, 10, "the stopped node's lease to run out")

        res = migrate(old, new)
        assert res.returncode == 1 and "holds 1 message(s) that are not in the source" in res.stderr
        assert "--merge" in res.stderr
        assert [m["id"] for m in new.cli_json("queue", "list")] == [theirs]

        report = migrated(old, new, "--merge")
        assert report["merge"] and report["foreign"] == 1 and report["messages"]["stored"] == 1
        assert report["target_after"]["messages"] == 2
        assert sorted(m["id"] for m in new.cli_json("queue", "list")) == sorted([mine, theirs])


def via(proxy: TcpProxy, dsn: str) -> str:
    """``dsn`` through the proxy."""
    host, port = dsn.split("@", 1)[1].split("/", 1)[0].rsplit(":", 1)
    return dsn.replace(f"@{host}:{port}/", f"@{proxy.host}:{proxy.port}/")


async def fill_file(path: Path, count: int, now: float) -> dict[str, Any]:
    """``count`` messages straight into a SQLite queue file: attempts, events, and a few leased by a dead process."""
    queue = SqliteQueue(path)
    await queue.open()
    try:
        ids = []
        for n in range(count):
            message, data = new_message(now - count + n, ["bob@example.net", "carol@example.net"], size=600)
            await queue.store(message, data)
            ids.append(message.id)
            if n % 10 == 0:  # tried once: bob delivered, carol deferred for a quarter of an hour
                await queue.record(message, [update(message, "bob@example.net", RecipientState.DELIVERED, now),
                                             update(message, "carol@example.net", RecipientState.DEFERRED, now,
                                                    now + 900)], now)
            queue.add_event(Event(now + n / 1000, "test.filled", f"message {n}"))
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
        owner = f"{socket.gethostname()}:{int(dead.stdout)}:crashed"
        leased = await queue.claim_due(now, 3, owner, now + 3600)  # a server that died while delivering
        return {"ids": sorted(ids), "leased": [m.id for m in leased]}
    finally:
        await queue.close()


def test_an_interrupted_migration_is_run_again(mailpipe_factory, postgres: PostgresPeer, pg_dsn: str, workdir: Path):
    """A connection cut during the COMMIT of the second batch: exit 1, a clear hint, the first batch kept;
    the same command run again copies the rest (nothing twice), and once more changes nothing."""
    now = time.time()
    source = MailpipeProcess(workdir / "file", {"hostname": "file.test", "state_dir": str(workdir / "file" / "state"),
                                                "listen": ["127.0.0.1:1"]})
    filled = asyncio.run(fill_file(workdir / "file" / "state" / "queue.sqlite3", 250, now))
    with TcpProxy(postgres.host, postgres.port) as proxy:
        target = mailpipe_factory(node_config("new", via(proxy, pg_dsn), ("127.0.0.1", 1)), name="new")
        assert target.cli_json("queue", "list") == []  # tables created
        proxy.cut_next_commit(filled["ids"][230].encode())
        res = migrate(source, target)
        assert proxy.cut.is_set()
        assert res.returncode == 1, res.stdout
        assert "unreachable" in res.stderr and "run the same command again" in res.stderr
        assert queue_call(pg_dsn, lambda q: q.transfer_counts()).messages == 200

        report = migrated(source, target)
        assert report["foreign"] == 0
        assert report["messages"] == {"exported": 250, "stored": 50, "skipped": 200}
        assert report["target_after"] == report["source_counts"]
        assert report["source_counts"]["attempts"] == 50 and report["source_counts"]["events"] == 250

        again = migrated(source, target)
        assert again["messages"]["stored"] == again["attempts"]["stored"] == 0
        assert again["events"]["stored"] == 0 and again["target_after"]["events"] == 251  # queue.migrated
    lines = queue_call(pg_dsn, lambda q: q.attempts(limit=10_000))
    assert len(lines) == 50 and {a.node for a in lines} == {"file.test"}
    due = {m.id: m.next_attempt for m in queue_call(pg_dsn, lambda q: q.list(limit=10_000))}
    assert all(due[mid] <= time.time() for mid in filled["leased"])  # unleased, due again
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM messages WHERE lease_owner IS NOT NULL").fetchone() == (0,)


PLAIN_QUEUE = '''"""A third-party queue plugin without the optional transfer face: the sqlite backend's code only."""
from mailpipe.core.hookspecs import hookimpl
from mailpipe.core.plugin import Plugin
from mailpipe.core.queue import QueueBackend
from mailpipe.plugins.sql_queue.reads import SqlAdminReads
from mailpipe.plugins.sqlite_queue.store import SqliteQueue

PlainQueue = type("PlainQueue", (SqlAdminReads, QueueBackend), {
    k: v for k, v in vars(SqliteQueue).items() if k not in ("__dict__", "__weakref__", "_abc_impl")})


class PlainQueuePlugin(Plugin):
    name = "plainq"

    @hookimpl
    def open_queue(self, context):
        return PlainQueue(context.settings.state_dir / "plain.sqlite3")
'''


def test_a_backend_without_the_transfer_face_is_refused(mailpipe_factory, workdir: Path):
    """A queue plugin that cannot export or import makes the command say so, exit 1, and copy nothing."""
    site = workdir / "site"
    (site / "plainq-1.0.dist-info").mkdir(parents=True)
    (site / "plainq-1.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: plainq\nVersion: 1.0\n")
    (site / "plainq-1.0.dist-info" / "entry_points.txt").write_text(
        "[mailpipe.plugins]\nplainq = plainq:PlainQueuePlugin\n")
    (site / "plainq.py").write_text(PLAIN_QUEUE)
    env = {"PYTHONPATH": str(site)}
    with RecordingSink(SINK_HOST) as sink:
        sink.behaviour.rcpt["later@example.net"] = LATER
        old = mailpipe_factory(sqlite_config("old", sink), name="old").start()
        stays = send(old, "stays", ("later@example.net",))
        wait_until(lambda: state_of(old, stays) == {"later@example.net": "deferred"}, 20, "its deferral")
        assert old.stop() == 0
        plain = mailpipe_factory({**sqlite_config("plain", sink), "queue": {"plainq": {}}}, name="plain", env=env)
        for source, target, verb in ((old, plain, "import"), (plain, old, "export")):
            res = run_pipeline(source.config_path, "queue", "migrate", "--to", str(target.config_path), check=False,
                               env=env)
            assert res.returncode == 1, res.stdout + res.stderr
            assert "queue backend 'plainq'" in res.stderr and f"cannot {verb} messages" in res.stderr
            assert "nothing was copied" in res.stderr
        assert plain.cli_json("queue", "list") == [] and [m["id"] for m in old.cli_json("queue", "list")] == [stays]
