"""Several ``pipeline serve`` nodes on one PostgreSQL queue: mail at both, SIGKILL, takeover, admin actions."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter

import pytest

from tests.peers.net import wait_until
from tests.peers.sink import RecordingSink

from .helpers import attempts, in_threads, node_config, queue_call, queued, send, subjects

SINK_HOST = "127.0.1.61"


def test_one_node_delivers_and_names_itself(mailpipe_factory, pg_dsn: str):
    """A node on the postgres queue accepts, delivers once, and its attempts and events name it."""
    with RecordingSink(SINK_HOST) as sink:
        node = mailpipe_factory(node_config("node1", pg_dsn, sink), name="node1").start()
        queue_id = send(node, "hello postgres")
        assert subjects(sink.wait_for(1)) == ["hello postgres"]
        wait_until(lambda: node.cli_json("queue", "show", queue_id)["recipients"][0]["state"] == "delivered",
                   10, "delivery recorded")
        [line] = attempts(pg_dsn, message=queue_id)
        assert (line.outcome, line.node) == ("delivered", "node1.test")
        assert node.stop() == 0
        events = queue_call(pg_dsn, lambda q: q.events(since=0, limit=1000))
        assert {"gateway.started", "gateway.stopped"} <= {e.kind for e in events}
        assert {e.node for e in events if e.kind.startswith("gateway.")} == {"node1.test"}


def test_mail_arriving_at_both_nodes_is_delivered_once(mailpipe_factory, pg_dsn: str):
    """Two nodes, one queue, mail handed to both at once: every message reaches the sink exactly once."""
    with RecordingSink(SINK_HOST) as sink:
        nodes = [mailpipe_factory(node_config(f"node{n}", pg_dsn, sink), name=f"node{n}").start() for n in (1, 2)]
        wanted = [f"at node{n} #{i}" for n in (1, 2) for i in range(15)]
        in_threads([lambda n=n: [send(nodes[n - 1], f"at node{n} #{i}") for i in range(15)] for n in (1, 2)])
        sink.wait_for(len(wanted), timeout=60)
        wait_until(lambda: not queued(pg_dsn), 30, "every message recorded as delivered")
        assert sorted(subjects(sink)) == sorted(wanted)
        assert len(sink.messages) == len(wanted)
        lines = attempts(pg_dsn)
        assert len(lines) == len(wanted) and {a.outcome for a in lines} == {"delivered"}
        assert {a.node for a in lines} <= {"node1.test", "node2.test"}
        for node in nodes:
            assert node.stop() == 0


def lease_owner(postgres_dsn: str, message_id: str) -> str | None:
    """Who holds the lease on a message right now (straight from the table)."""
    import psycopg

    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        row = conn.execute("SELECT lease_owner FROM messages WHERE id = %s", (message_id,)).fetchone()
    return None if row is None else row[0]


class Tarpit:
    """A TCP server that accepts connections and never says a word (a smarthost that hangs)."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.sock = socket.create_server((host, 0))
        self.host, self.port = host, self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def close(self) -> None:
        for s in [self.sock, *self.conns]:
            s.close()


@pytest.mark.parametrize("killed", [0, 1], ids=["node1-killed", "node2-killed"])
def test_sigkill_of_either_node_under_load_loses_nothing(mailpipe_factory, pg_dsn: str, killed: int):
    """Mail handed to both nodes while one is SIGKILLed mid-delivery: every accepted message arrives.

    A client whose node died goes to the other (as with two MX hosts). The only duplicates allowed
    are the inevitable ones: messages the sink had answered (or was answering) when their node died
    before recording it, at most the killed node's concurrency.
    """
    concurrency = 4
    with RecordingSink(SINK_HOST) as sink:
        sink.behaviour.data_delay = 0.1
        nodes = [mailpipe_factory(node_config(f"node{n}", pg_dsn, sink, concurrency=concurrency),
                                  name=f"node{n}").start() for n in (1, 2)]
        accepted: list[str] = []
        lock = threading.Lock()

        def client(n: int) -> None:
            for i in range(20):
                subject = f"from client{n} #{i}"
                for node in (nodes[n], nodes[1 - n]):
                    try:
                        send(node, subject)
                    except (OSError, AssertionError, Exception):  # noqa: B014 - the node died: the other one
                        continue
                    with lock:
                        accepted.append(subject)
                    break

        def killer() -> None:
            wait_until(lambda: len(sink.messages) >= 8, 60, "deliveries under way")
            nodes[killed].kill()

        in_threads([lambda: client(0), lambda: client(1), killer])
        assert nodes[killed].proc is not None and nodes[killed].proc.returncode == -9
        assert len(accepted) == 40, "the survivor accepted what the dead node could not"
        survivor = nodes[1 - killed]
        wait_until(lambda: set(accepted) <= set(subjects(sink)), 60, "every accepted message delivered",
                   lambda: f"missing: {sorted(set(accepted) - set(subjects(sink)))}\n{survivor.log_text()[-3000:]}")
        wait_until(lambda: not queued(pg_dsn), 30, "the queue empty")
        twice = {s: n for s, n in Counter(subjects(sink)).items() if n > 1}
        assert len(twice) <= concurrency, f"more duplicates than deliveries the dead node had in flight: {twice}"
        assert survivor.stop() == 0


def test_a_dead_nodes_leased_mail_is_taken_over_after_the_lease(mailpipe_factory, pg_dsn: str):
    """node1 hangs in a delivery (its smarthost never answers) and is SIGKILLed: node2 takes the mail over.

    While node1 lives and renews, node2 leaves the message alone; once node1 is dead, node2
    delivers it about ``lease`` (3 s) later, without any restart.
    """
    tarpit = Tarpit()
    try:
        with RecordingSink(SINK_HOST) as sink:
            node1 = mailpipe_factory(node_config("node1", pg_dsn, (tarpit.host, tarpit.port)), name="node1").start()
            queue_id = send(node1, "taken over")
            wait_until(lambda: (lease_owner(pg_dsn, queue_id) or "").split(":")[1:2] == [str(node1.proc.pid)],
                       20, "node1 holding the lease")
            node2 = mailpipe_factory(node_config("node2", pg_dsn, sink), name="node2").start()
            # A live owner's lease holds: for two leases node2 must not take the message (a negative check).
            deadline = time.monotonic() + 6.0
            while time.monotonic() < deadline:
                assert not sink.messages, "node2 took a message that live node1 was delivering"
                time.sleep(0.2)
            node1.kill()
            killed_at = time.monotonic()
            got = sink.wait_for(1, timeout=20)
            waited = time.monotonic() - killed_at
            assert subjects(got) == ["taken over"]
            assert waited <= 3.0 + 6.0, f"took {waited:.1f}s after the kill"
            wait_until(lambda: not queued(pg_dsn), 10, "delivery recorded")
            [line] = [a for a in attempts(pg_dsn, message=queue_id) if a.outcome == "delivered"]
            assert line.node == "node2.test"
            assert node2.stop() == 0
    finally:
        tarpit.close()


def test_admin_actions_through_one_node_are_seen_and_acted_on_by_the_other(mailpipe_factory, pg_dsn: str):
    """hold/release/retry given with node1's config: node2 sees the change and delivers within seconds."""
    with RecordingSink(SINK_HOST) as sink:
        sink.behaviour.rcpt["bob@example.net"] = "451 4.2.0 try later"
        node1 = mailpipe_factory(node_config("node1", pg_dsn, sink), name="node1").start()
        node2 = mailpipe_factory(node_config("node2", pg_dsn, sink), name="node2").start()
        held = send(node1, "held then released")
        retried = send(node2, "retried")

        def state(node, queue_id: str) -> str:
            return node.cli_json("queue", "show", queue_id)["recipients"][0]["state"]

        wait_until(lambda: state(node2, held) == state(node2, retried) == "deferred", 20, "both deferred")
        node1.cli("queue", "hold", held)
        assert state(node2, held) == "held"
        assert node1.stop() == 0  # from now on only node2 runs: nothing local pokes it
        del sink.behaviour.rcpt["bob@example.net"]

        began = time.monotonic()
        node1.cli("queue", "release", held)
        assert subjects(sink.wait_for(1, timeout=10)) == ["held then released"]
        released_after = time.monotonic() - began
        node1.cli("queue", "retry", retried)
        assert subjects(sink.wait_for(2, timeout=10))[1] == "retried"
        assert released_after < 5.0, f"node2 took {released_after:.1f}s to act on the release"
        wait_until(lambda: state(node2, held) == state(node2, retried) == "delivered", 10, "both delivered")
        assert {a.node for a in attempts(pg_dsn, outcome="delivered")} == {"node2.test"}
        assert node2.stop() == 0
