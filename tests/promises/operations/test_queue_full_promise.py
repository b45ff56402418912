"""docs/operations.md: a full disk makes the intake answer ``452 4.3.1`` and records a ``queue.full`` event.

The queue lives on a 3 MB tmpfs (the ``small_disk`` fixture, tests/peers/fixtures.py) that the test
fills with mail (as tests/core/test_queue_faults.py does). Mounting needs root; where that is impossible, set
MAILPIPE_TESTS_NO_TMPFS=1 to skip this test knowingly; without it, a failed mount is a failure.
"""

from __future__ import annotations

import smtplib
from pathlib import Path

from tests.core.helpers import fill_queue
from tests.peers.net import free_port, wait_until
from tests.peers.sink import RecordingSink
from tests.promises.operations.helpers import sample, scrape


def test_full_disk_answers_452_4_3_1_and_emits_queue_full(mailpipe_factory, small_disk: Path) -> None:
    """Each message refused for want of space gets exactly ``452 4.3.1 Insufficient system storage`` and one
    ``queue.full`` error event (in the serve log and counted in ``mailpipe_events_total``); the session
    stays usable and nothing refused is ever delivered."""
    metrics = f"127.0.0.1:{free_port()}"
    with RecordingSink() as sink:
        gw = mailpipe_factory({
            "hostname": "gw.test", "state_dir": str(small_disk / "state"),
            "delivery": {"send_immediately": False},
            "chain": [{"smarthost": {"server": f"127.0.0.1:{sink.port}", "tls": "none"}},
                      {"metrics": {"listen": metrics}}],
        })
        gw.start()
        host, port = gw.address
        with smtplib.SMTP(host, port, timeout=30) as client:
            client.ehlo("client.test")
            accepted, refused = fill_queue(client, "a@origin.test", "b@dest.test")
            assert client.noop()[0] == 250  # the session goes on after a refusal
        assert accepted, "nothing was accepted at all"
        assert refused == [(452, b"4.3.1 Insufficient system storage")] * 3
        wait_until(lambda: gw.log_text().count("queue.full: ") == 3, 10, "three queue.full events in the log",
                   gw.log_text)
        assert "ERROR mailpipe.events: queue.full: queue " in gw.log_text()
        text = scrape(f"http://{metrics}/metrics")
        assert sample(text, "mailpipe_events_total", {"kind": "queue.full", "level": "error"}) == 3.0
        assert len(gw.cli_json("queue", "list")) == len(accepted)
        gw.stop()
    assert sink.messages == []
