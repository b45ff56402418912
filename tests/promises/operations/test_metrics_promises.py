"""docs/console.md "Prometheus metrics": ``attempt_duration``, ``queue_oldest_age``, ``events_total``, and
counters that survive a SIGHUP reload. Read from ``/metrics`` of a running ``pipeline serve``.
"""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from tests.peers.mailpipe import MailpipeProcess
from tests.peers.net import free_port, wait_until
from tests.peers.sink import RecordingSink
from tests.promises.operations.helpers import sample, scrape, submit, wait_outcome


@dataclass
class Metered:
    """A running gateway with ``metrics``, its sink (the smarthost) and its /metrics URL."""

    gw: MailpipeProcess
    sink: RecordingSink
    url: str

    def metrics(self) -> str:
        return scrape(self.url)


@pytest.fixture
def sink() -> Iterator[RecordingSink]:
    with RecordingSink() as s:
        yield s


@pytest.fixture
def metered(mailpipe_factory, sink: RecordingSink) -> Callable[[], Metered]:
    def make() -> Metered:
        port = free_port()
        gw = mailpipe_factory({
            "hostname": "gw.metrics.test",
            "chain": [{"smarthost": {"server": f"127.0.0.1:{sink.port}", "tls": "none"}},
                      {"retry": {"every": "15m", "expire_after": "2d"}},
                      {"metrics": {"listen": f"127.0.0.1:{port}"}}],
        }).start()
        return Metered(gw, sink, f"http://127.0.0.1:{port}/metrics")

    return make


def test_attempt_duration_is_one_observation_per_route_attempt(metered) -> None:
    """A message to two recipients at one smarthost is one attempt of one route: one observation in
    ``mailpipe_attempt_duration_seconds``, of at least the time the server took (0.6s at the final dot)."""
    m = metered()
    m.sink.behaviour.data_delay = 0.6
    mid = submit(m.gw, ["bob@dest.test", "carol@dest.test"])
    wait_outcome(m.gw, mid, "bob@dest.test")
    wait_outcome(m.gw, mid, "carol@dest.test")
    assert [msg.rcpt_tos for msg in m.sink.messages] == [["bob@dest.test", "carol@dest.test"]]
    text = m.metrics()
    name = "mailpipe_attempt_duration_seconds"
    assert sample(text, f"{name}_count") == 1.0
    assert sample(text, f"{name}_bucket", {"le": "0.5"}) == 0.0
    assert sample(text, f"{name}_bucket", {"le": "30.0"}) == 1.0
    assert sample(text, f"{name}_bucket", {"le": "+Inf"}) == 1.0
    assert 0.6 <= sample(text, f"{name}_sum") < 30
    assert sample(text, "mailpipe_recipients_total", {"outcome": "delivered"}) == 2.0


def test_attempt_duration_counts_every_attempt(metered) -> None:
    """Two messages, each one attempt (one deferred by the server, one delivered): two observations."""
    m = metered()
    m.sink.behaviour.rcpt["bob@dest.test"] = "450 4.2.0 busy"
    deferred = submit(m.gw, ["bob@dest.test"])
    wait_outcome(m.gw, deferred, "bob@dest.test")
    delivered = submit(m.gw, ["carol@dest.test"])
    wait_outcome(m.gw, delivered, "carol@dest.test")
    assert sample(m.metrics(), "mailpipe_attempt_duration_seconds_count") == 2.0


def test_queue_oldest_age_is_the_age_of_the_oldest_queued_message(metered) -> None:
    """``mailpipe_queue_oldest_age_seconds`` is now minus the arrival of the oldest message still queued;
    0 once the queue is empty."""
    m = metered()
    m.sink.behaviour.rcpt["bob@dest.test"] = "450 4.2.0 busy"
    m.sink.behaviour.rcpt["carol@dest.test"] = "450 4.2.0 busy"
    first = submit(m.gw, ["bob@dest.test"])
    wait_outcome(m.gw, first, "bob@dest.test")
    second = submit(m.gw, ["carol@dest.test"])
    wait_outcome(m.gw, second, "carol@dest.test")
    created = {row["id"]: row["created"] for row in m.gw.cli_json("queue", "list")}
    assert created[first] < created[second]
    before = time.time()
    text = m.metrics()
    after = time.time()
    age = sample(text, "mailpipe_queue_oldest_age_seconds")
    assert before - created[first] <= age <= after - created[first], (age, before, after, created)
    assert sample(text, "mailpipe_queue_messages") == 2.0
    assert sample(text, "mailpipe_queue_recipients", {"state": "deferred"}) == 2.0
    m.sink.behaviour.rcpt.clear()
    m.gw.cli("queue", "retry", "--all")
    m.sink.wait_for(2)
    wait_until(lambda: sample(m.metrics(), "mailpipe_queue_messages") == 0.0, 20, "an empty queue")
    assert sample(m.metrics(), "mailpipe_queue_oldest_age_seconds") == 0.0


def events_total(text: str) -> dict[tuple[str, str], float]:
    """Every ``mailpipe_events_total{kind,level}`` sample."""
    return {(kind, level): float(value) for kind, level, value in re.findall(
        r'^mailpipe_events_total\{kind="([^"]+)",level="([^"]+)"\} (\S+)$', text, re.M)}


def test_events_total_counts_warning_and_error_events_only(metered) -> None:
    """``mailpipe_events_total{kind,level}`` counts warning and error events by kind (a bounce, a refused
    reload); info events (started, delivered, reloaded, reports queued) are not counted."""
    m = metered()
    m.sink.behaviour.rcpt["bob@dest.test"] = "550 5.1.1 no such user"
    mid = submit(m.gw, ["bob@dest.test", "carol@dest.test"])
    wait_outcome(m.gw, mid, "bob@dest.test")
    m.sink.wait_for(2)  # carol, and the bounce to alice
    assert events_total(m.metrics()) == {("message.bounced", "warning"): 1.0}
    good = m.gw.config_path.read_text()
    m.gw.config_path.write_text(good.replace("every: 15m", "every: whenever"))
    m.gw.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "config.reload_failed" in m.gw.log_text(), 10, "the refused reload", m.gw.log_text)
    m.gw.config_path.write_text(good)  # for the CLI, which reads the same file
    [failed] = m.gw.cli_json("events", "--kind", "config.reload_failed")
    assert failed["level"] in ("warning", "error")
    assert events_total(m.metrics()) == {("message.bounced", "warning"): 1.0,
                                         ("config.reload_failed", failed["level"]): 1.0}


def test_counters_survive_a_sighup_reload(metered) -> None:
    """A SIGHUP reload that changes top-level settings and a plugin keeps every counter; counting goes on."""
    m = metered()
    m.sink.behaviour.rcpt["bob@dest.test"] = "450 4.2.0 busy"
    mid = submit(m.gw, ["bob@dest.test", "carol@dest.test"])
    wait_outcome(m.gw, mid, "bob@dest.test")
    wait_outcome(m.gw, mid, "carol@dest.test")
    names = [("mailpipe_messages_accepted_total", None), ("mailpipe_recipients_total", {"outcome": "delivered"}),
             ("mailpipe_recipients_total", {"outcome": "deferred"}), ("mailpipe_delivery_latency_seconds_count", None),
             ("mailpipe_attempt_duration_seconds_count", None)]
    before = [sample(m.metrics(), name, labels) for name, labels in names]
    assert before == [1.0, 1.0, 1.0, 1.0, 1.0]
    errors = {"route": f"smarthost:127.0.0.1:{m.sink.port}", "outcome": "deferred"}
    assert sample(m.metrics(), "mailpipe_delivery_errors_total", errors) == 1.0

    text = m.gw.config_path.read_text()
    assert "hostname: gw.metrics.test" in text and "every: 15m" in text
    m.gw.config_path.write_text(text.replace("hostname: gw.metrics.test", "hostname: gw.reloaded.test")
                                .replace("every: 15m", "every: 20m"))
    m.gw.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "config.reloaded" in m.gw.log_text(), 10, "the reload", m.gw.log_text)
    assert "kept metrics" in m.gw.log_text()
    after = m.metrics()
    assert [sample(after, name, labels) for name, labels in names] == before
    assert sample(after, "mailpipe_delivery_errors_total", errors) == 1.0

    later = submit(m.gw, ["dave@dest.test"])
    wait_outcome(m.gw, later, "dave@dest.test")
    text = m.metrics()
    assert sample(text, "mailpipe_messages_accepted_total") == 2.0
    assert sample(text, "mailpipe_recipients_total", {"outcome": "delivered"}) == 2.0
