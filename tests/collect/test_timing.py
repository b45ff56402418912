"""When collections run: every ``every``, or at the delivery schedule's windows; failures retried with growing
pauses and reported once per episode. The collector is driven on a manual clock against a closed port (a POP3
server that is down) and a real Dovecot (one that works again)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import yaml

from mailpipe.core.clock import ManualClock
from mailpipe.core.collect.service import Collector
from mailpipe.core.config import load_config
from mailpipe.core.events import Event, Events
from mailpipe.core.intake.services import IntakeServices
from mailpipe.core.runtime import RuntimeHolder, build_runtime, make_context, open_queue
from mailpipe.core.sessions import Sessions
from mailpipe.core.windows import Windows
from tests.peers.certs import TestPKI
from tests.peers.dovecot import DovecotPeer
from tests.peers.net import free_port

from .conftest import account, message


async def with_collector(workdir: Path, config: dict[str, Any], body: Any) -> list[Event]:
    path = workdir / "mailpipe.yaml"
    path.write_text(yaml.safe_dump({"hostname": "gw.corp.test", "state_dir": str(workdir / "state"), **config}))
    loaded = load_config(path)
    clock = ManualClock(1_700_000_000.0)
    seen: list[Event] = []
    events = Events(clock)
    events.attach(observe=seen.append)
    queue = await open_queue(loaded, make_context(loaded, clock=clock, events=events))
    try:
        context = make_context(loaded, clock=clock, events=events, queue=queue)
        runtime, _ = build_runtime(loaded, context)
        services = IntakeServices(RuntimeHolder(runtime), queue, events, clock, Sessions(clock), stored=lambda m: None)
        await body(Collector(services, queue, resolve=context.resolve_path), clock)
    finally:
        await queue.close()
    return seen


def test_schedule_or_every(workdir: Path, dovecot_peer: DovecotPeer, pki: TestPKI) -> None:
    scheduled = account(dovecot_peer, pki)
    del scheduled["collect"]["every"]
    config = {"delivery": {"send_immediately": False, "schedule": ["0 */2 * * *"]},
              "accounts": [scheduled, {**account(dovecot_peer, pki, "bob", every="10m")}]}

    async def check(collector: Collector, clock: ManualClock) -> None:
        by_schedule, every = collector.accounts()
        assert collector.interval(by_schedule) is None and collector.interval(every) == 600
        assert [s.schedule for s in collector.statuses()] == ["at the delivery schedule", "every 10m"]
        window = Windows(lambda: collector.intake.runtimes.current.settings.delivery).next_window(clock.now())
        await collector.collect(by_schedule)
        await collector.collect(every)
        first, second = collector.statuses()
        assert first.next_run == window and second.next_run == clock.now() + 600

    asyncio.run(with_collector(workdir, config, check))


def test_failures_back_off_and_report_once_per_episode(workdir: Path, dovecot_peer: DovecotPeer,
                                                        pki: TestPKI) -> None:
    dovecot_peer.add_message("alice", message(1))
    down = account(dovecot_peer, pki, every="5m")
    down["pop3"]["port"] = free_port()  # nothing listens: the server is down

    async def check(collector: Collector, clock: ManualClock) -> None:
        (acc,) = collector.accounts()
        pauses = []
        for _ in range(7):
            report = await collector.collect(acc)
            assert report.error and "refused" in report.error.lower()
            pauses.append(collector.status(acc).next_run - clock.now())
            clock.advance(pauses[-1])
        assert pauses == [300, 600, 1200, 2400, 3600, 3600, 3600]
        collector.intake.runtimes.current.settings.accounts[0].pop3.port = dovecot_peer.pop3s_port
        report = await collector.collect(acc)
        assert report.error is None and len(report.collected) == 1
        st = collector.status(acc)
        assert st.failures == 0 and st.next_run == clock.now() + 300 and st.collected == 1

    seen = asyncio.run(with_collector(workdir, {"accounts": [down]}, check))
    kinds = [e.kind for e in seen if e.kind.startswith("collect.")]
    assert kinds.count("collect.failed") == 1 and kinds.count("collect.recovered") == 1
