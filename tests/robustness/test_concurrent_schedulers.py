"""Two schedulers on one queue (and `pipeline queue retry` meanwhile) never deliver a message twice."""

from __future__ import annotations

import json
import smtplib
import subprocess
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from tests.core.helpers import make_message
from tests.peers.net import free_port, wait_until
from tests.peers.sink import RecordingSink

COUNT = 120
RETRIES = 20
HELD = [f"r{n}@example.net" for n in range(0, COUNT, 10)]  # refused with 451 until the retry calls are done


def test_two_servers_one_queue_no_duplicates(mailpipe_factory, workdir):
    """120 messages through two servers sharing a queue, 20 `queue retry --all` meanwhile: each delivered once.

    Every tenth recipient is refused with 451 until the 20 retry calls are over, so every call
    finds deferred mail in the shared queue and starts a delivery run on it while the rest is
    being delivered. Every call must succeed and reach its running server (a failed call used to
    pass unnoticed in its thread).
    """
    with RecordingSink("127.0.1.41") as sink:
        sink.behaviour.data_delay = 0.05  # a slow server widens the window for a double delivery
        for rcpt in HELD:
            sink.behaviour.rcpt[rcpt] = "451 4.3.2 held back by the test"
        common = {
            "hostname": "gw.test",
            "queue": {"sqlite": {"path": str(workdir / "shared-queue.sqlite3")}},
            "delivery": {"concurrency": 10},
            "chain": [{"smarthost": {"server": sink.host, "port": sink.port, "tls": "none"}},
                      {"retry": {"every": "1h", "expire_after": "2d"}}],
        }
        a = mailpipe_factory({**common, "listen": [f"127.0.0.1:{free_port()}"]}, name="a")
        b = mailpipe_factory({**common, "listen": [f"127.0.0.1:{free_port()}"]}, name="b")
        a.start()
        b.start()

        def poke_retry() -> list[subprocess.CompletedProcess[str]]:
            """RETRIES `queue retry --all` calls, through a and b in turn; every call's result."""
            return [(a, b)[i % 2].cli("queue", "retry", "--all", "--json", check=False)
                    for i in range(RETRIES)]  # bounded

        def send(gw, first: int) -> int:
            host, port = gw.address
            sent = 0
            with smtplib.SMTP(host, port, timeout=30) as client:
                client.ehlo("client.test")
                for n in range(first, COUNT, 2):
                    client.sendmail("a@example.org", [f"r{n}@example.net"], make_message(f"n{n}"))
                    sent += 1
            return sent

        with ThreadPoolExecutor(max_workers=3, thread_name_prefix="sched") as pool:
            poker = pool.submit(poke_retry)
            senders = [pool.submit(send, a, 0), pool.submit(send, b, 1)]
            # .result() re-raises a thread's exception here.
            assert sum(f.result(timeout=120) for f in senders) == COUNT
            retries = poker.result(timeout=120)
        failed = [(r.returncode, r.stdout, r.stderr) for r in retries if r.returncode != 0]
        assert failed == [], failed
        answers = [json.loads(r.stdout) for r in retries]
        assert len(answers) == RETRIES
        assert all(x["command"] == "retry" and x["server_woken"] is True for x in answers), answers
        # The held-back mail was still queued through all the calls: nothing delivered it yet.
        assert not {r for m in sink.messages for r in m.rcpt_tos} & set(HELD)

        for rcpt in HELD:
            del sink.behaviour.rcpt[rcpt]
        a.cli("queue", "retry", "--all")
        sink.wait_for(COUNT, timeout=120)
        wait_until(lambda: a.cli_json("queue", "list") == [], 60, "queue drained")

        counts = Counter(m.rcpt_tos[0] for m in sink.messages)
        assert len(counts) == COUNT
        assert [r for r, n in counts.items() if n > 1] == []
        attempts = a.cli_json("log", "--limit", "100000")
        delivered = Counter(x["recipient"] for x in attempts if x["outcome"] == "delivered")
        assert len(delivered) == COUNT and set(delivered.values()) == {1}  # recorded once each, too
        held_tries = Counter(x["recipient"] for x in attempts if x["outcome"] == "temporary")
        assert set(held_tries) == set(HELD)
        assert min(held_tries.values()) >= 2  # the retry calls started delivery runs on them
        delivered_by = {gw.config_path.parent.name: gw.log_text().count("message.delivered") for gw in (a, b)}
        print(f"two schedulers: delivered by {delivered_by}; {RETRIES} queue retry calls, all answered; "
              f"{sum(held_tries.values())} attempts of the {len(HELD)} held-back messages before they were let "
              f"through (fewest {min(held_tries.values())})")
        assert sum(delivered_by.values()) == COUNT, delivered_by
        assert min(delivered_by.values()) > 0, delivered_by  # both schedulers took part
