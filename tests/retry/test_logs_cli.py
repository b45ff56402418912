"""`pipeline log`, `pipeline events` and `pipeline stats` (real CLI processes) on a queue holding
delivered, deferred, bounced and expired mail, made by a gateway driven through a ManualClock."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.peers.harness import Harness
from tests.peers.mailpipe import run_pipeline
from tests.peers.sink import RecordingSink
from tests.retry.helpers import retry_config

D = 86400.0


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Three days of mail ending now: ids of each message and the config file."""
    workdir = tmp_path_factory.mktemp("logs")
    with RecordingSink("127.0.0.1") as sink:
        config = retry_config(workdir, sink, retry={"every": "15m", "expire_after": "2d"})
        sink.behaviour.rcpt["bob@example.net"] = "550 5.1.1 user unknown"
        sink.behaviour.rcpt["erin@example.net"] = "450 4.2.0 busy"
        sink.behaviour.rcpt["dave@example.net"] = "451 4.4.1 no answer"
        t0 = time.time() - 3 * D

        async def build() -> tuple[dict[str, str], Path]:
            async with Harness(workdir, config, start=t0) as h:
                ids = {
                    "delivered": await h.submit("alice@example.org", ["carol@example.net"]),
                    "bounced": await h.submit("alice@example.org", ["bob@example.net"]),
                    "expired": await h.submit("zoe@example.org", ["erin@example.net"]),
                }
                await h.deliver()
                h.clock.set(t0 + 2.5 * D)
                ids["deferred"] = await h.submit("alice@example.org", ["dave@example.net"])
                await h.deliver()
                return ids, h.config_path

        ids, path = asyncio.run(build())
        sink.wait_for(3)
    return {"config": path, "ids": ids, "t0": t0}


def cli(history: dict[str, Any], *args: str) -> Any:
    res = run_pipeline(history["config"], *args)
    return json.loads(res.stdout) if "--json" in args else res.stdout


def test_log_shows_every_attempt_with_filters(history: dict[str, Any]) -> None:
    """`pipeline log` lists every attempt with code, route and host; each filter narrows it."""
    rows = cli(history, "log", "--json")
    got = [(r["recipient"], r["action"]) for r in rows]
    first_day, later = sorted(got[:4]), sorted(got[4:])  # deliveries of one run go in parallel
    assert first_day == [("alice@example.org", "delivered"),  # the bounce report about bob
                         ("bob@example.net", "bounced"), ("carol@example.net", "delivered"),
                         ("erin@example.net", "deferred")]
    assert later == [("dave@example.net", "deferred"), ("erin@example.net", "expired"),
                     ("zoe@example.org", "delivered")]  # the report about erin, to her sender
    [bob] = [r for r in rows if r["recipient"] == "bob@example.net"]
    assert bob["outcome"] == "permanent" and bob["code"] == 550 and bob["enhanced"] == "5.1.1"
    assert "user unknown" in bob["reply"] and bob["route"].startswith("smarthost:127.0.0.1:")
    assert bob["remote_host"].startswith("127.0.0.1") and bob["duration"] > 0 and bob["time"] > 0

    ids = history["ids"]
    expired = cli(history, "log", "--json", "--outcome", "expired")
    assert [r["recipient"] for r in expired] == ["erin@example.net"]
    assert [r["message_id"] for r in cli(history, "log", "--json", "-m", ids["bounced"])] == [ids["bounced"]]
    assert {r["recipient"] for r in cli(history, "log", "--json", "--sender", "zoe@example.org")} == {
        "erin@example.net"}
    [report] = cli(history, "log", "--json", "--recipient", "alice@example.org")
    assert report["sender"] == "" and report["action"] == "delivered"
    assert len(cli(history, "log", "--json", "--outcome", "temporary")) == 3
    recent = cli(history, "log", "--json", "--since", "1d")
    assert sorted(r["recipient"] for r in recent) == [
        "dave@example.net", "erin@example.net", "zoe@example.org"]

    text = cli(history, "log", "--recipient", "bob@example.net")
    assert ids["bounced"] in text and "<alice@example.org> -> <bob@example.net>  bounced (permanent)" in text
    assert "550 5.1.1" in text


def test_events_show_what_the_gateway_did(history: dict[str, Any]) -> None:
    """`pipeline events` shows reports, bounces and expiry, filtered by kind and level."""
    events = cli(history, "events", "--json")
    kinds = [e["kind"] for e in events]
    assert kinds.count("dsn.queued") == 2 and "message.bounced" in kinds and "message.expired" in kinds
    [expired] = cli(history, "events", "--json", "--kind", "message.expired")
    assert history["ids"]["expired"] in expired["text"] and "1 recipient(s) expired" in expired["text"]
    assert expired["level"] == "warning"
    assert {e["kind"] for e in cli(history, "events", "--json", "--kind", "dsn")} == {"dsn.queued"}
    serious = cli(history, "events", "--json", "--level", "warning")
    assert serious and all(e["level"] in ("warning", "error") for e in serious)
    assert "message.expired" in cli(history, "events")


def test_stats_counts_outcomes_and_the_queue(history: dict[str, Any]) -> None:
    """`pipeline stats` counts outcomes over a period and describes the queue as it is now."""
    week = cli(history, "stats", "--json", "--since", "7d")
    assert week["outcomes"] == {"delivered": 3, "deferred": 2, "bounced": 1, "expired": 1, "dropped": 0}
    assert week["received"] == 6 and week["notifications"] == 2
    assert week["queue_depth"] == 1 and week["recipients"] == {"deferred": 1}
    assert abs(week["oldest"] - (history["t0"] + 2.5 * D)) < 1
    assert 0.4 * D < week["oldest_age"] < 0.6 * D
    day = cli(history, "stats", "--json", "--since", "1d")
    assert day["outcomes"] == {"delivered": 1, "deferred": 1, "bounced": 0, "expired": 1, "dropped": 0}
    text = cli(history, "stats")
    assert "queue: 1 message(s)" in text and "oldest: arrived" in text
