"""The postgres queue when the database misbehaves: absent at start, gone while running, cut during COMMIT,
restarted under load, too new a schema. Each against a real PostgreSQL (a proxy in front plays the network).
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import tempfile
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import yaml

from mailpipe.core.queue import QueueError
from mailpipe.plugins.postgres_queue import PostgresQueue
from tests.peers.mailpipe import pipeline_cmd
from tests.peers.net import free_port, wait_until
from tests.peers.postgres import PostgresPeer, available
from tests.peers.sink import RecordingSink

from .helpers import in_threads, node_config, queued, send, send_until_accepted, subjects, try_send
from .proxy import TcpProxy

SINK_HOST = "127.0.1.62"
PASSWORD = "s3cret-pw"


@pytest.fixture
def proxy(postgres: PostgresPeer) -> Iterator[TcpProxy]:
    """A TCP proxy in front of the session's PostgreSQL."""
    with TcpProxy(postgres.host, postgres.port) as p:
        yield p


def via(proxy: TcpProxy, dsn: str) -> str:
    """The same database, reached through the proxy."""
    return re.sub(r"@[^/]+/", f"@{proxy.host}:{proxy.port}/", dsn)


def test_unreachable_at_start_exits_1_naming_the_dsn_without_its_password(workdir: Path):
    """``pipeline serve`` with nothing listening at the DSN: exit 1, one clear line, no password."""
    port = free_port()
    dsn = f"postgresql://mailpipe:{PASSWORD}@127.0.0.1:{port}/mailpipe"
    config = {"hostname": "node1.test", "state_dir": str(workdir / "state"), "listen": [f"127.0.0.1:{free_port()}"],
              "queue": {"postgres": {"dsn": dsn, "timeout": "2s"}}, "chain": []}
    path = workdir / "node1.yaml"
    path.write_text(yaml.safe_dump(config))
    res = subprocess.run(pipeline_cmd("serve", "-c", str(path)), capture_output=True, text=True, timeout=60)
    output = res.stdout + res.stderr
    assert res.returncode == 1, output
    assert PASSWORD not in output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert f"postgresql://mailpipe@127.0.0.1:{port}/mailpipe" in lines[0] and "unreachable" in lines[0], lines[0]


def test_a_newer_schema_is_refused(pg_dsn: str):
    """A database written by a newer mailpipe: open raises a QueueError saying so, and changes nothing."""

    async def main() -> None:
        first = PostgresQueue(pg_dsn)
        await first.open()
        await first.close()
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute("UPDATE mailpipe_schema SET version = 99")
        with pytest.raises(QueueError, match=r"schema version 99, newer than this mailpipe understands \(1\)"):
            await PostgresQueue(pg_dsn).open()

    asyncio.run(main())
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        assert conn.execute("SELECT version FROM mailpipe_schema").fetchall() == [(99,)]


def test_unreachable_while_running_451_then_back_without_loss_or_duplicates(mailpipe_factory, pg_dsn, proxy):
    """The network to the database is cut while mail is being delivered and handed in.

    During the cut the intake answers 451 4.3.0 and deliveries that finished wait to be
    recorded; the node logs the outage once and its end once. When the database is back,
    every accepted message is delivered exactly once.
    """
    with RecordingSink(SINK_HOST) as sink:
        sink.behaviour.data_delay = 1.0  # deliveries are in flight when the cut comes
        node = mailpipe_factory(node_config("node1", via(proxy, pg_dsn), sink), name="node1").start()
        before = [f"before #{i}" for i in range(3)]
        for subject in before:
            send(node, subject)
        wait_until(lambda: queued(pg_dsn) and not [s for s in queued(pg_dsn) if s.recipients.get("pending")]
                   or len(sink.messages) > 0, 10, "deliveries under way")
        proxy.block()
        code, text = try_send(node, "during the cut")
        assert (code, text.split(" ", 1)[0]) == (451, "4.3.0"), f"{code} {text}"
        code, _ = try_send(node, "during the cut, again")
        assert code == 451
        sink.wait_for(len(before), timeout=20)  # the sink answered them all while the database was away
        proxy.unblock()
        send(node, "after the cut")
        wait_until(lambda: len(sink.messages) >= len(before) + 1 and not queued(pg_dsn), 40,
                   "everything delivered and recorded", lambda: node.log_text()[-3000:])
        assert sorted(subjects(sink)) == sorted([*before, "after the cut"])
        assert node.stop() == 0
        ours = [line for line in node.log_text().splitlines() if "mailpipe.queue.postgres" in line]
        assert len(ours) == 2, ours  # once when the outage began, once when it ended
        assert "unreachable" in ours[0] and "ERROR" in ours[0] and "reachable again" in ours[1]


def test_a_connection_cut_during_commit_gives_no_250(mailpipe_factory, pg_dsn, proxy):
    """The connection drops after the message's statements, before COMMIT reaches the server: no 250, not stored."""
    with RecordingSink(SINK_HOST) as sink:
        node = mailpipe_factory(node_config("node1", via(proxy, pg_dsn), sink), name="node1").start()
        proxy.cut_next_commit(b"INSERT INTO messages")
        code, text = try_send(node, "cut at commit")
        assert proxy.cut.is_set(), "the proxy saw no COMMIT to cut"
        assert code == 451 and text.startswith("4.3.0"), f"{code} {text}"
        assert queued(pg_dsn) == []
        send(node, "after the cut")
        assert subjects(sink.wait_for(1)) == ["after the cut"]
        wait_until(lambda: not queued(pg_dsn), 10, "delivery recorded")
        assert subjects(sink) == ["after the cut"]
        assert node.stop() == 0


@pytest.fixture
def own_postgres() -> Iterator[PostgresPeer]:
    """A cluster of this test's own (it is restarted: the session's cluster stays untouched)."""
    reason = available()
    if reason:
        pytest.skip(reason)
    peer = PostgresPeer(Path(tempfile.mkdtemp(prefix="mailpipe-pg-restart-")) / "cluster")
    with peer:
        yield peer
    peer.remove()


@pytest.mark.parametrize("immediate", [False, True], ids=["fast", "crash"])
def test_a_database_restart_under_load_loses_nothing(mailpipe_factory, own_postgres: PostgresPeer, immediate: bool):
    """Clients hand mail to two nodes while PostgreSQL restarts (fast shutdown, or a crash): 0 lost.

    Clients try again after 451 like any MTA (a quick restart is often covered by the pool's wait
    for a connection, and nobody sees a 451). Every accepted message is delivered; a message may
    arrive twice only if its COMMIT went through while the node saw the database vanish (a 451
    for a stored message), so duplicates are bounded by the refusals.
    """
    dsn = own_postgres.create_database()
    with RecordingSink(SINK_HOST) as sink:
        nodes = [mailpipe_factory(node_config(f"node{n}", dsn, sink, concurrency=4), name=f"node{n}").start()
                 for n in (1, 2)]
        sink.behaviour.data_delay = 0.05  # deliveries in flight all along
        refusals: list[str] = []
        restarted = threading.Event()
        wanted: set[str] = set()

        def client(n: int) -> None:
            after = 0
            for i in range(300):  # bounded: mail keeps coming until well after the restart
                subject = f"client{n} #{i}"
                send_until_accepted(nodes[n], subject, refusals)
                wanted.add(subject)
                after += restarted.is_set()
                if after >= 10:
                    return

        def restarter() -> None:
            wait_until(lambda: len(sink.messages) >= 5, 60, "mail flowing")
            own_postgres.restart(immediate=immediate)
            restarted.set()

        in_threads([lambda: client(0), lambda: client(1), restarter])
        assert restarted.is_set()  # mid-stream: 5 delivered before it, 10 more handed in per client after it
        wait_until(lambda: wanted <= set(subjects(sink)), 90, "every accepted message delivered",
                   lambda: f"missing {sorted(wanted - set(subjects(sink)))}\n{nodes[0].log_text()[-2000:]}")
        wait_until(lambda: not queued(dsn), 60, "the queue empty")
        twice = {s: n for s, n in Counter(subjects(sink)).items() if n > 1}
        assert len(twice) <= len(refusals), f"duplicates {twice} beyond the refusals {refusals}"
        for node in nodes:
            assert node.stop() == 0
