"""Two schedulers on one queue (and `pipeline queue retry` meanwhile) never deliver a message twice."""

from __future__ import annotations

import smtplib
import threading
from collections import Counter

from tests.core.helpers import make_message
from tests.peers.net import free_port, wait_until
from tests.peers.sink import RecordingSink

COUNT = 120


def test_two_servers_one_queue_no_duplicates(mailpipe_factory, workdir):
    with RecordingSink("127.0.1.41") as sink:
        sink.behaviour.data_delay = 0.05  # a slow server widens the window for a double delivery
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
        stop = threading.Event()

        def poke_retry() -> None:
            for _ in range(20):  # bounded
                if stop.is_set():
                    return
                a.cli("queue", "retry", "--all")

        poker = threading.Thread(target=poke_retry)
        poker.start()
        try:
            for gw, first in ((a, 0), (b, 1)):
                host, port = gw.address
                with smtplib.SMTP(host, port) as client:
                    client.ehlo("client.test")
                    for n in range(first, COUNT, 2):
                        client.sendmail("a@example.org", [f"r{n}@example.net"], make_message(f"n{n}"))
            sink.wait_for(COUNT, timeout=120)
            wait_until(lambda: a.cli_json("queue", "list") == [], 60, "queue drained")
        finally:
            stop.set()
            poker.join(120)
        counts = Counter(m.rcpt_tos[0] for m in sink.messages)
        assert len(counts) == COUNT
        assert [r for r, n in counts.items() if n > 1] == []
        delivered_by = {gw.config_path.parent.name: gw.log_text().count("message.delivered") for gw in (a, b)}
        assert sum(delivered_by.values()) == COUNT, delivered_by
        assert min(delivered_by.values()) > 0, delivered_by  # both schedulers took part
