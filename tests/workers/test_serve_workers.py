"""``pipeline serve`` with ``workers: 2``: one address, every worker accepts and delivers, the supervisor
restarts a worker that died (its leased mail recovered), passes SIGTERM and SIGHUP on, and the queue
commands, the metrics page and the retry poke cover every worker. docs/workers.md.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import threading
from pathlib import Path

import pytest

from tests.peers.mailpipe import MailpipeProcess
from tests.peers.net import free_port, pid_alive, port_accepts, wait_until
from tests.peers.sink import RecordingSink
from tests.promises.operations.helpers import sample, scrape, submit
from tests.workers.helpers import relay_config, serving, worker_pids


@pytest.fixture
def sink():
    with RecordingSink() as s:
        yield s


def subjects(sink: RecordingSink) -> set[str]:
    return {m.data.split(b"Subject: ", 1)[1].split(b"\r\n", 1)[0].decode() for m in list(sink.messages)}


def queue_files(gw: MailpipeProcess) -> dict[str, int]:
    """Messages per queue file of the gateway's state folder (read-only)."""
    out = {}
    for path in sorted(Path(gw.config["state_dir"]).glob("queue*.sqlite3")):
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            out[path.name] = conn.execute("SELECT count(*) FROM messages").fetchone()[0]
    return out


def send_many(gw: MailpipeProcess, count: int, prefix: str) -> list[str]:
    """``count`` messages, each over its own connection (so the kernel spreads them over the workers)."""
    return [submit(gw, [f"r{i}@dest.test"], subject=f"{prefix} {i}") for i in range(count)]


def test_every_worker_accepts_and_delivers_on_one_address(mailpipe_factory, sink) -> None:
    """Two workers listen on the one address; connections go to both, each keeps the mail it accepted in a
    file of its own and delivers it; ``pipeline stats`` and ``log`` read both files."""
    gw = mailpipe_factory(relay_config(sink)).start()
    pids = serving(gw, 2)
    assert sorted(pids) == worker_pids(gw)
    send_many(gw, 40, "spread")
    wait_until(lambda: len(sink.messages) == 40, 30, "40 messages delivered")
    assert subjects(sink) == {f"spread {i}" for i in range(40)}
    files = queue_files(gw)
    assert set(files) == {"queue.sqlite3", "queue-2.sqlite3"}, files
    assert all(n > 0 for n in files.values()) and sum(files.values()) == 40, files
    wait_until(lambda: gw.cli_json("stats")["outcomes"]["delivered"] == 40, 20, "stats over both files")
    assert gw.cli_json("stats")["received"] == 40
    assert len(gw.cli_json("log", "--outcome", "delivered")) == 40
    started = [e for e in gw.cli_json("events", "--kind", "gateway.started")]
    assert sorted(e["data"].get("worker") for e in started) == [1, 2]
    assert gw.stop() == 0


def test_queue_commands_and_retry_cover_every_worker(mailpipe_factory, sink) -> None:
    """Mail deferred in both workers' files: ``queue list`` shows all of it, ``hold``/``release`` count all of
    it, and ``queue retry --all`` wakes every worker (the retry interval is an hour: only the poke explains a
    delivery now)."""
    sink.behaviour.data = "451 4.3.0 try later"
    config = relay_config(sink)
    config["chain"][1] = {"retry": {"every": "1h", "expire_after": "1d"}}
    gw = mailpipe_factory(config).start()
    serving(gw, 2)
    ids = send_many(gw, 16, "later")
    wait_until(lambda: len(gw.cli_json("queue", "list", "--state", "deferred")) == 16, 30, "16 deferred")
    files = queue_files(gw)
    assert all(n > 0 for n in files.values()) and sum(files.values()) == 16, files
    assert {m["id"] for m in gw.cli_json("queue", "list")} == set(ids)
    assert gw.cli_json("queue", "hold", "--all")["count"] == 16
    assert gw.cli_json("queue", "release", "--all")["count"] == 16  # due now, pokes the workers
    wait_until(lambda: len(gw.cli_json("queue", "list", "--state", "deferred")) == 16, 30, "deferred again")
    sink.behaviour.data = None
    done = gw.cli_json("queue", "retry", "--all")
    assert done["count"] == 16 and done["server_woken"] is True
    wait_until(lambda: subjects(sink) == {f"later {i}" for i in range(16)}, 30, "all delivered after the poke")
    wait_until(lambda: gw.cli_json("queue", "list") == [], 20, "queue empty")
    assert gw.stop() == 0


def test_a_worker_that_dies_is_restarted_and_its_leased_mail_recovered(mailpipe_factory, sink) -> None:
    """SIGKILL of worker 2 while it delivers: the supervisor starts it again (same file), the mail it had
    leased is due again and delivered, and the event log says a worker was restarted."""
    hold = threading.Event()
    sink.behaviour.hold_data = hold
    gw = mailpipe_factory(relay_config(sink)).start()
    first, second = serving(gw, 2)
    send_many(gw, 12, "inflight")
    state = Path(gw.config["state_dir"])

    def leased_by_second() -> int:
        with sqlite3.connect(f"file:{state / 'queue-2.sqlite3'}?mode=ro", uri=True) as conn:
            return conn.execute("SELECT count(*) FROM messages WHERE lease_owner LIKE ?",
                                (f"%:{second}:%",)).fetchone()[0]

    wait_until(lambda: leased_by_second() > 0, 20, "worker 2 delivering")
    os.kill(second, signal.SIGKILL)
    wait_until(lambda: len(worker_pids(gw)) == 2 and second not in worker_pids(gw), 30, "worker 2 started again",
               gw.log_text)
    assert first in worker_pids(gw) and gw.alive()
    wait_until(lambda: any(e["kind"] == "worker.restarted" for e in gw.cli_json("events")), 30,
               "the restart in the event log")
    hold.set()
    wait_until(lambda: subjects(sink) >= {f"inflight {i}" for i in range(12)}, 60, "every message delivered",
               gw.log_text)
    wait_until(lambda: gw.cli_json("queue", "list") == [], 30, "queue empty")
    assert gw.cli_json("events", "--kind", "queue.recovered"), "the restarted worker recovered its leases"
    assert "worker 2" in gw.log_text() and "died" in gw.log_text()
    assert gw.stop() == 0


def test_sigterm_drains_every_worker_and_sighup_reloads_every_worker(mailpipe_factory, sink) -> None:
    """SIGHUP to the supervisor: each worker reloads (one ``config.reloaded`` each); SIGTERM: each worker
    stops cleanly, the supervisor exits 0 and no worker is left."""
    gw = mailpipe_factory(relay_config(sink)).start()
    pids = serving(gw, 2)
    config = relay_config(sink)
    config["delivery"]["concurrency"] = 7
    gw.write_config(config)
    assert gw.proc is not None
    gw.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: len(gw.cli_json("events", "--kind", "config.reloaded")) == 2, 30, "both workers reloaded",
               gw.log_text)
    submit(gw, ["after@dest.test"], subject="after reload")
    wait_until(lambda: "after reload" in subjects(sink), 20, "delivered after the reload")
    assert gw.stop() == 0
    assert not any(pid_alive(pid) for pid in pids)
    assert gw.log_text().count("gateway.stopped:") == 2


def test_killing_the_supervisor_ends_every_worker(mailpipe_factory, sink) -> None:
    """SIGKILL of the supervisor: the workers die with it (nothing keeps the port), and a new start serves."""
    gw = mailpipe_factory(relay_config(sink)).start()
    pids = serving(gw, 2)
    gw.kill()
    wait_until(lambda: not any(pid_alive(pid) for pid in pids), 10, "the workers gone with the supervisor")
    host, port = gw.address
    # Bounded, not one look: a single connect on loopback can, rarely, meet itself (a TCP self-connect when
    # the kernel picks the destination port as the source port); a worker still listening fails every look.
    wait_until(lambda: not port_accepts(host, port), 10, "nothing listening on the port any more")
    gw.start()
    serving(gw, 2, starts=2)
    submit(gw, ["again@dest.test"], subject="again")
    wait_until(lambda: "again" in subjects(sink), 20, "delivered after the restart")
    assert gw.stop() == 0


def test_a_busy_address_is_refused_as_by_one_process(mailpipe_factory, sink) -> None:
    """SO_REUSEPORT must not let the workers share a port another program listens on: exit 2, one error."""
    busy = socket.socket()
    busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    port = free_port()
    busy.bind(("127.0.0.1", port))
    busy.listen()
    try:
        gw = mailpipe_factory({**relay_config(sink), "listen": [f"127.0.0.1:{port}"]})
        with contextlib.suppress(AssertionError):  # the port accepts (the other program's socket) or it exited
            gw.start(timeout=30)
        wait_until(lambda: not gw.alive(), 30, "pipeline serve to give up", gw.log_text)
        assert gw.proc is not None and gw.proc.returncode == 2, gw.log_text()
        assert f"error: listen 127.0.0.1:{port}: cannot listen: " in gw.log_text()
        assert "address already in use" in gw.log_text().lower()
    finally:
        busy.close()


def test_metrics_in_worker_1_count_every_worker(mailpipe_factory, sink) -> None:
    """The metrics page is served once (by worker 1) and adds up every worker's counters and sessions."""
    port = free_port()
    config = relay_config(sink)
    config["chain"].append({"metrics": {"listen": f"127.0.0.1:{port}"}})
    gw = mailpipe_factory(config).start()
    serving(gw, 2)
    send_many(gw, 20, "counted")
    wait_until(lambda: len(sink.messages) == 20, 30, "20 delivered")
    assert all(n > 0 for n in queue_files(gw).values())
    url = f"http://127.0.0.1:{port}/metrics"
    wait_until(lambda: sample(scrape(url), "mailpipe_recipients_total", {"outcome": "delivered"}) == 20, 20,
               "both workers' deliveries counted")
    text = scrape(url)
    assert sample(text, "mailpipe_messages_accepted_total") == 20
    assert sample(text, "mailpipe_queue_messages") == 0
    assert gw.stop() == 0
