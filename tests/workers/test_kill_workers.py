"""SIGKILL under load with ``workers: 2``: kill a worker, kill the supervisor; nothing that got a 250 is lost.

The promise of one process (tests/robustness/test_kill_under_load.py) with workers: 600 messages
from 20 parallel sessions while, at seeded points of the load's progress, worker 2 is killed (the
supervisor starts it again on its own), then the supervisor (its workers die with it; the test
starts ``pipeline serve`` again), then worker 1, then the supervisor again. Clients resend what got
no 250. Every acknowledged message must reach the sink; a message delivered twice under one queue ID
is only the case RFC 5321 section 6.1 allows (a kill between the remote 250 and its record).
"""

from __future__ import annotations

import json
import os
import random
import signal

from tests.peers.net import pid_alive, wait_until
from tests.peers.resending import ResendingLoad, figures
from tests.peers.sink import RecordingSink
from tests.workers.helpers import relay_config, serving, worker_pid, worker_pids

MESSAGES = 600
SESSIONS = 20
KILLS = ("worker 2", "supervisor", "worker 1", "supervisor")
SEED = 20261130
DEADLINE = 150.0


def test_kill_workers_and_supervisor_under_load(mailpipe_factory, workdir) -> None:
    """Each kill lands while clients send; afterwards every acknowledged message is delivered."""
    rng = random.Random(SEED)
    low, width = 0.05 * MESSAGES, 0.80 * MESSAGES / len(KILLS)
    points = [int(low + k * width + rng.uniform(0, width)) for k in range(len(KILLS))]
    with RecordingSink("127.0.1.43") as sink:
        config = relay_config(sink)
        config["delivery"] = {"concurrency": 20, "shutdown_grace": "2s"}
        config["intake"] = {"max_connections": 100}
        gw = mailpipe_factory(config).start()
        serving(gw, 2)
        load = ResendingLoad(*gw.address, messages=MESSAGES, sessions=SESSIONS, deadline=DEADLINE)

        def killer() -> list[dict[str, object]]:
            """Kill each of KILLS in turn at its point of the load; return what each kill hit."""
            kills: list[dict[str, object]] = []
            starts = 1
            for point, whom in zip(points, KILLS, strict=True):
                if not load.wait_acknowledged(point, f"{point} messages acknowledged before killing {whom}"):
                    return kills
                kills.append({"whom": whom, "acknowledged": len(load.acked), "delivered": len(sink.messages)})
                # The kill lands while clients send; then no new message starts until the gateway is back,
                # so that a fast intake does not finish the load before the next kill.
                if whom == "supervisor":
                    workers = worker_pids(gw)
                    gw.kill()
                    with load.paused():
                        assert gw.proc is not None and gw.proc.returncode == -signal.SIGKILL
                        wait_until(lambda w=workers: not any(pid_alive(p) for p in w), 10, "workers gone too")
                        gw.start()
                        starts += 1
                        serving(gw, 2, starts=starts)
                else:
                    victim = worker_pid(gw, int(whom[-1]))
                    os.kill(victim, signal.SIGKILL)
                    with load.paused():
                        wait_until(lambda v=victim: len(worker_pids(gw)) == 2 and v not in worker_pids(gw), 30,
                                   f"{whom} started again", gw.log_text)
            return kills

        kills, sent = load.run(killer)

        assert [k["whom"] for k in kills] == list(KILLS), kills
        assert all(int(str(k["acknowledged"])) < MESSAGES for k in kills), kills
        assert sum(sent) == len(load.acked) == MESSAGES
        wait_until(lambda: load.delivered(sink.messages), 120, "every acknowledged message delivered", gw.log_text)
        wait_until(lambda: gw.cli_json("queue", "list") == [], 60, "queue drained")
        assert gw.stop() == 0

        tally = load.tally(sink.messages)
        result = figures(load, tally, kills=kills)
        (workdir / "kill_workers.json").write_text(json.dumps(result, indent=2))
        print("kill workers under load:", json.dumps(result))
        assert tally.lost == []
        assert tally.unexplained == [], (tally.unexplained, tally.intake_twice)
        assert tally.rfc5321_duplicates <= len(KILLS) * 20, tally.delivered_twice
