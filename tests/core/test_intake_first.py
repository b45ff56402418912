"""``delivery.intake_first`` (core/intakefirst.py): during a burst of incoming mail that fills the core, the
scheduler starts one delivery at a time; for at most ``intake_first`` seconds, then again only after as long
a calm; the end wakes the scheduler. The looks are driven here with the process's CPU seconds, the clock and
the connected clients given by the test; the scheduler's side runs the real gateway and a real SMTP sink.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
from pathlib import Path

import pytest

from mailpipe.core.intakefirst import END_AFTER, MIN_SESSIONS, SATURATED, STILL_BUSY, TICK, IntakeFirst, loop_demand
from tests.peers.harness import Harness
from tests.peers.net import wait_until
from tests.peers.sink import RecordingSink
from tests.smarthost.helpers import smarthost_config


class Machine:
    """The readings one look takes: the process's CPU seconds, the clock, the most clients connected."""

    def __init__(self, limit: float = 10.0) -> None:
        self.now = 1000.0
        self.cpu = 0.0
        self.clients = 0
        self.limit = limit
        self.gate = IntakeFirst(lambda: self.clients, lambda: self.limit, cpu=lambda: self.cpu,
                                clock=lambda: self.now)

    def look(self, busy: float, clients: int) -> bool:
        """Let one tick pass with the core ``busy`` (share of one core) and ``clients`` connected; one look."""
        self.now += TICK
        self.cpu += busy * TICK
        self.clients = clients
        return self.gate.look()

    def looks_until_released(self, busy: float, clients: int) -> int:
        """Looks like that until the hold ends (the last one says so); how many it took."""
        for n in range(1, 1000):
            if self.look(busy, clients):
                assert not self.gate.active
                return n
            assert self.gate.active
        raise AssertionError("the hold never ended")


def test_the_loops_demand_counts_its_work_and_not_its_sleep() -> None:
    """``loop_demand`` (the default reading): time the calling thread ran or waited to run; a thread that
    computes for 0.2 s adds about that much, one that sleeps 0.2 s adds next to nothing."""
    import time

    start = loop_demand()
    end = time.monotonic() + 0.2
    while time.monotonic() < end:
        pass
    worked = loop_demand() - start
    assert 0.15 <= worked <= 0.3
    start = loop_demand()
    time.sleep(0.2)
    assert loop_demand() - start < 0.05


def test_without_schedstat_the_loops_own_cpu_time_is_read(monkeypatch, tmp_path) -> None:
    """Another OS, or a kernel without schedstats: ``loop_demand`` falls back to the thread's CPU time (it
    still grows with work), and an unreadable file is no error."""
    import time

    from mailpipe.core import intakefirst

    monkeypatch.setattr(intakefirst, "SCHEDSTAT", tmp_path / "no-such-schedstat")
    start = loop_demand()
    assert abs(start - time.thread_time()) < 0.05
    spent, deadline = time.thread_time() + 0.05, time.monotonic() + 10  # 50 ms of this thread's CPU, bounded
    while time.thread_time() < spent and time.monotonic() < deadline:
        pass
    assert loop_demand() - start >= 0.05
    (tmp_path / "garbled").write_text("not numbers\n")
    monkeypatch.setattr(intakefirst, "SCHEDSTAT", tmp_path / "garbled")
    assert loop_demand() >= 0


def test_a_full_core_with_clients_sending_holds_deliveries_to_one() -> None:
    m = Machine()
    assert m.gate.concurrency(10) == 10
    assert not m.look(SATURATED + 0.1, MIN_SESSIONS) and m.gate.active
    assert m.gate.concurrency(10) == 1 and m.gate.concurrency(1) == 1


@pytest.mark.parametrize(("busy", "clients"), [
    (SATURATED - 0.1, 20),  # clients, but the core has room for deliveries too
    (1.0, MIN_SESSIONS - 1),  # a full core, but one client: nothing to put first
    (0.0, 0),
])
def test_no_burst_no_hold(busy: float, clients: int) -> None:
    m = Machine()
    for _ in range(5):
        assert not m.look(busy, clients)
        assert not m.gate.active and m.gate.concurrency(10) == 10


def test_the_hold_lasts_while_clients_send_and_ends_when_they_stop() -> None:
    """Once on, the core may be less than full (the intake alone) but busier than STILL_BUSY; a burst is over
    when no look saw it for END_AFTER (one quiet look is not enough), and the end is reported once (the
    scheduler is woken to claim what waited)."""
    m = Machine()
    m.look(1.0, 10)
    for _ in range(40):
        assert not m.look(STILL_BUSY + 0.05, 10) and m.gate.active
    assert not m.look(0.0, 0) and m.gate.active  # one quiet look
    assert not m.look(STILL_BUSY + 0.05, 10) and m.gate.active
    looks = m.looks_until_released(STILL_BUSY + 0.05, 1)
    assert abs(looks * TICK - END_AFTER) <= TICK + 1e-9
    assert m.gate.concurrency(10) == 10
    assert not m.look(0.0, 0)  # reported once


def test_an_idle_core_ends_the_hold_even_with_clients_connected() -> None:
    """Clients that keep their connections open but send nothing do not hold deliveries back."""
    m = Machine()
    m.look(1.0, 10)
    assert m.looks_until_released(STILL_BUSY - 0.1, 10) * TICK <= END_AFTER + TICK


def test_a_burst_that_goes_on_gets_the_time_limit_then_shares_until_a_calm_as_long() -> None:
    """Load that never ends: at most ``intake_first`` seconds of priority, then deliveries take their share as
    long as the burst lasts; a short calm does not start a new hold, a calm of ``intake_first`` does."""
    m = Machine(limit=1.0)
    m.look(1.0, 10)
    assert abs(m.looks_until_released(1.0, 10) * TICK - 1.0) <= 2 * TICK
    for _ in range(100):  # the burst goes on: no new hold
        assert not m.look(1.0, 10) and not m.gate.active
    for _ in range(int(END_AFTER / TICK) + 1):  # a short calm: the burst is over
        m.look(0.1, 0)
    m.look(1.0, 10)
    assert not m.gate.active
    for _ in range(int(1.0 / TICK) + 1):  # a calm as long as the limit
        m.look(0.1, 0)
    m.look(1.0, 10)
    assert m.gate.active


def test_intake_first_zero_never_holds() -> None:
    m = Machine(limit=0.0)
    for _ in range(5):
        assert not m.look(1.0, 50) and not m.gate.active


def test_the_limit_in_force_is_read_at_every_look() -> None:
    """A reload that sets ``intake_first: 0`` ends a hold at the next look."""
    m = Machine()
    m.look(1.0, 10)
    assert m.gate.active
    m.limit = 0.0
    assert m.look(1.0, 10) is True and not m.gate.active
    assert not m.look(1.0, 10) and not m.gate.active


def test_the_scheduler_starts_one_delivery_at_a_time_while_the_intake_goes_first(workdir: Path) -> None:
    """The real gateway and a real sink: six messages due; held, the sink never sees two deliveries at once;
    not held, the same scheduler delivers the next six over several connections at once."""
    with RecordingSink("127.0.1.61") as sink:
        config = smarthost_config(workdir, {"server": f"{sink.host}:{sink.port}", "tls": "none"},
                                  delivery={"concurrency": 6})

        async def scenario() -> None:
            async with Harness(workdir, config) as h:
                h.intake_first(True)
                for i in range(6):
                    await h.submit("alice@example.org", [f"held{i}@remote.test"])
                await h.deliver()
                assert sink.peak == 1, "two deliveries at once while the intake went first"
                assert len(sink.messages) == 6
                h.intake_first(False)
                for i in range(6):
                    await h.submit("alice@example.org", [f"free{i}@remote.test"])
                await h.deliver()
                assert sink.peak > 1, "deliveries ran one at a time without the hold"

        asyncio.run(scenario())
        sink.wait_for(12)


SMTP_SOURCE = "/usr/sbin/smtp-source"


@pytest.mark.skipif(not Path(SMTP_SOURCE).exists(), reason="smtp-source (Postfix's load generator) not installed")
def test_a_real_burst_is_taken_first_held_and_delivered_after_it(mailpipe_factory) -> None:
    """``pipeline serve`` (one process) under Postfix's smtp-source, ten sessions, a new connection per
    message: the log says the intake went first and how many messages were held; every message reaches the
    sink exactly once and the queue ends empty."""
    count = 1500
    with RecordingSink("127.0.1.62") as sink:
        gw = mailpipe_factory({"hostname": "gw.test",
                               "chain": [{"smarthost": {"server": f"{sink.host}:{sink.port}", "tls": "none"}},
                                         {"retry": {"every": "1m", "expire_after": "1h"}}]}).start()
        host, port = gw.address
        sent = subprocess.run([SMTP_SOURCE, "-s", "20", "-m", str(count), "-l", "2048", "-f", "burst@source.test",
                               "-t", "to@sink.test", "-M", "source.test", f"{host}:{port}"],
                              capture_output=True, text=True, timeout=180)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        sink.wait_for(count, timeout=120)
        wait_until(lambda: gw.cli_json("queue", "list") == [], 60, "the queue to be empty", gw.log_text)
        log = gw.log_text()
        assert "intake first: the core is" in log, log[-3000:]
        held = re.search(r"(\d+) messages held during the burst are delivered now", log)
        assert held and int(held.group(1)) > 0, log[-3000:]
        assert len(sink.messages) == count, "a message was delivered twice"
        assert gw.stop() == 0
