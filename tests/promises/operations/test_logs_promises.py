"""docs/retry-and-logs.md: ``pipeline log --limit``, pruning at start, missed schedule windows not made up.

The history is made in the past with the Harness's manual clock (``write_history``); what the
administrator sees is read through ``pipeline serve`` and the CLI with ``--json``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.peers.harness import SyncHarness
from tests.peers.mailpipe import run_pipeline
from tests.peers.net import free_port, wait_until
from tests.peers.sink import RecordingSink
from tests.promises.operations.helpers import SENDER, write_history

HOUR = 3600.0
DAY = 86400.0


@pytest.fixture
def sink() -> Iterator[RecordingSink]:
    with RecordingSink() as s:
        yield s


def queue_config(workdir: Path, sink: RecordingSink, **extra: object) -> Path:
    """A config file on the queue in ``workdir/state`` (what ``write_history`` wrote), for the CLI."""
    path = workdir / "cli.yaml"
    path.write_text(yaml.safe_dump({
        "state_dir": str(workdir / "state"), "listen": [f"127.0.0.1:{free_port()}"],
        "chain": [{"smarthost": {"server": f"127.0.0.1:{sink.port}", "tls": "none"}}], **extra}))
    return path


def log_json(config: Path, *args: str) -> list[dict[str, Any]]:
    """``pipeline log ARGS --json`` on ``config``."""
    return json.loads(run_pipeline(config, "log", *args, "--json").stdout)


def test_log_limit_shows_the_newest_n_oldest_first(workdir: Path, sink: RecordingSink) -> None:
    """``--limit N`` shows the newest N attempts, still oldest first."""
    now = time.time()
    write_history(workdir, workdir / "state", sink.port,
                  [(now - 3 * HOUR, ["bob@dest.test"]), (now - 2 * HOUR, ["carol@dest.test"]),
                   (now - HOUR, ["dave@dest.test"])])
    config = queue_config(workdir, sink)
    assert [r["recipient"] for r in log_json(config)] == ["bob@dest.test", "carol@dest.test", "dave@dest.test"]
    assert [r["recipient"] for r in log_json(config, "--limit", "2")] == ["carol@dest.test", "dave@dest.test"]
    assert [r["recipient"] for r in log_json(config, "--limit", "1")] == ["dave@dest.test"]
    text = run_pipeline(config, "log", "--limit", "1").stdout.splitlines()
    assert len(text) == 2 and "<alice@origin.test> -> <dave@dest.test>  delivered  via smarthost:" in text[0]
    assert text[1] == f"    250 2.0.0 127.0.0.1:{sink.port} said: OK queued"


def test_log_limit_defaults_to_200(workdir: Path, sink: RecordingSink) -> None:
    """Without ``--limit`` the newest 200 attempts are shown: of 201, the oldest is left out."""
    now = time.time()
    crowd = [f"r{n:03d}@dest.test" for n in range(200)]
    write_history(workdir, workdir / "state", sink.port, [(now - 2 * HOUR, ["first@dest.test"]), (now - HOUR, crowd)])
    rows = log_json(queue_config(workdir, sink))
    assert len(rows) == 200
    assert sorted(r["recipient"] for r in rows) == crowd
    assert len(log_json(queue_config(workdir, sink), "--limit", "201")) == 201


def test_serve_prunes_history_older_than_history_days_at_start(mailpipe_factory, workdir: Path,
                                                                 sink: RecordingSink) -> None:
    """``pipeline serve`` removes finished messages, attempts and events older than ``history_days`` as it
    starts, and records a ``queue.pruned`` event with the numbers; younger history stays."""
    now = time.time()
    state = workdir / "mailpipe" / "state"
    sink.behaviour.rcpt["bob@dest.test"] = "550 5.1.1 no such user"
    old, young = write_history(workdir, state, sink.port,
                               [(now - 3 * DAY, ["bob@dest.test", "carol@dest.test"]),
                                (now - HOUR, ["dave@dest.test"])])
    # old: bob bounced, carol delivered, the bounce report to alice delivered: 3 attempts, 2 messages and
    # the events message.bounced and dsn.queued.
    gw = mailpipe_factory({"hostname": "gw.test", "queue": {"sqlite": {"history_days": 1}},
                           "chain": [{"smarthost": {"server": f"127.0.0.1:{sink.port}", "tls": "none"}}]})
    before = log_json(gw.config_path)
    assert sorted(r["recipient"] for r in before) == ["alice@origin.test", "bob@dest.test", "carol@dest.test",
                                                      "dave@dest.test"]
    assert sorted(e["kind"] for e in gw.cli_json("events")) == ["dsn.queued", "message.bounced"]
    gw.start()
    wait_until(lambda: "queue.pruned" in gw.log_text(), 20, "the pruning at start", gw.log_text)
    [event] = gw.cli_json("events", "--kind", "queue.pruned")
    assert event["data"] == {"attempts": 3, "events": 2, "messages": 2}
    assert event["text"] == "removed old history: 3 attempts, 2 events, 2 messages"
    assert [(r["message_id"], r["recipient"]) for r in log_json(gw.config_path)] == [(young, "dave@dest.test")]
    assert gw.cli("queue", "show", old, check=False).returncode == 1
    assert gw.cli_json("queue", "show", young)["recipients"][0]["state"] == "delivered"
    assert sorted(e["kind"] for e in gw.cli_json("events")) == ["gateway.started", "queue.pruned"]


def test_missed_schedule_windows_are_not_made_up_after_downtime(workdir: Path, sink: RecordingSink) -> None:
    """A gateway stopped over five hourly windows does not deliver at start; the next window makes one
    delivery run, one attempt, not one per missed window."""
    sink.behaviour.rcpt["bob@dest.test"] = "450 4.2.0 busy"  # each run that reaches bob is one attempt
    config = {"hostname": "gw.test", "state_dir": str(workdir / "state"), "listen": [f"127.0.0.1:{free_port()}"],
              "delivery": {"send_immediately": False, "schedule": ["0 * * * *"]},
              "chain": [{"smarthost": {"server": f"127.0.0.1:{sink.port}", "tls": "none"}},
                        {"retry": {"every": "1m", "expire_after": "2d"}}]}
    before = SyncHarness(workdir / "before", config, start=1_900_000_000.0)
    try:
        window = before.h.next_window()
        assert window is not None
        before.clock.set(window + 30 * 60)  # half past: between two windows
        mid = before.submit(SENDER, ["bob@dest.test"])
        assert before.tick() == 0  # outside the schedule nothing leaves
    finally:
        before.close()
    # Down from half past the hour until half past, five hours later: five windows missed.
    after = SyncHarness(workdir / "after", config, start=window + 5 * HOUR + 30 * 60)
    try:
        assert after.tick() == 0, "a missed window was made up at start"
        assert after.states(mid) == {"bob@dest.test": "pending"}
        assert after.h.next_window() == window + 6 * HOUR
        after.clock.set(window + 6 * HOUR)
        assert after.tick() == 1
        assert [(a.recipient, a.code, a.action) for a in after.attempts(message=mid)] == [
            ("bob@dest.test", 450, "deferred")]
        after.clock.advance(5 * 60)  # bob is due again (every: 1m), but the window's minute is over
        assert after.tick() == 0
        assert len(after.attempts(message=mid)) == 1
    finally:
        after.close()
    assert sink.messages == []
