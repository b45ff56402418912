"""docs/operations.md: a full disk makes the intake answer ``452 4.3.1`` and records a ``queue.full`` event.

The queue lives on a 3 MB tmpfs that the test fills with mail (the approach of
tests/core/test_queue_faults.py). Mounting needs root; where that is impossible, set
MAILPIPE_TESTS_NO_TMPFS=1 to skip this test knowingly; without it, a failed mount is a failure.
"""

from __future__ import annotations

import os
import smtplib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.core.helpers import make_message
from tests.peers.net import free_port, wait_until
from tests.peers.sink import RecordingSink
from tests.promises.operations.helpers import sample, scrape


@pytest.fixture
def small_disk(workdir: Path) -> Iterator[Path]:
    """A 3 MB tmpfs mounted for this test."""
    mount = workdir / "small"
    mount.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True,
                         timeout=30)
    if res.returncode != 0:
        reason = f"cannot mount a small tmpfs here: {res.stderr.decode().strip()}"
        if os.environ.get("MAILPIPE_TESTS_NO_TMPFS") == "1":
            pytest.skip(reason)
        pytest.fail(reason + " (set MAILPIPE_TESTS_NO_TMPFS=1 to skip this test)")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False, timeout=30)


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
        accepted: list[str] = []
        refused: list[tuple[int, bytes]] = []
        body = "x" * 70 + "\n"
        with smtplib.SMTP(host, port, timeout=30) as client:
            client.ehlo("client.test")
            for n in range(60):  # bounded: 60 x 100 KB is twice the disk
                client.mail("a@origin.test")
                client.rcpt("b@dest.test")
                code, text = client.data(make_message(f"fill {n}", body * 1400))
                if code == 250:
                    accepted.append(f"fill {n}")
                else:
                    refused.append((code, text))
                    if len(refused) >= 3:
                        break
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
