"""SIGKILL at random points during intake and delivery under load: nothing that got a 250 is lost.

1,000 messages from 20 parallel sessions while the gateway is killed with SIGKILL
and restarted, KILLS times. The kills are placed by the load's progress (a seeded
random point in each of KILLS slices of the run), so every kill lands while clients
are still sending and deliveries are running, however fast this machine is; the
real number of kills is read back from the serve log (one ``gateway.started`` per
start). Clients resend a message whose 250 they did not see (as real clients do).
Afterwards every acknowledged message must have reached the sink. Duplicates are
told apart by the gateway's queue ID in the Received header: two queue IDs for one
message means the client sent it twice (its session was cut after the commit,
before it read the 250); one queue ID delivered twice means the gateway died
between the remote 250 and recording it (the one case RFC 5321 section 6.1
allows), at most one per delivery in flight per kill.

The figures are printed (``pytest -s`` or ``-rP`` shows them) and written to
``kill_under_load.json`` in the test's temporary folder, never into the source tree.
"""

from __future__ import annotations

import json
import random
import signal
import time

from tests.peers.net import wait_until
from tests.peers.resending import ResendingLoad, figures
from tests.peers.sink import RecordingSink

MESSAGES = 1000
SESSIONS = 20
KILLS = 6
CONCURRENCY = 20
SEED = 20261128
DEADLINE = 120.0  # seconds for the whole load, kills included (pytest's timeout is 300)


def kill_points(rng: random.Random) -> list[int]:
    """Acknowledged-message counts at which to kill: one random point in each of KILLS slices of 5%..85%."""
    low, width = 0.05 * MESSAGES, 0.80 * MESSAGES / KILLS
    return [int(low + k * width + rng.uniform(0, width)) for k in range(KILLS)]


def test_kill_restart_under_load(mailpipe_factory, workdir):
    """Every message that got a 250 is delivered through KILLS real SIGKILLs; duplicates are only the allowed kinds."""
    points = kill_points(random.Random(SEED))
    with RecordingSink("127.0.1.42") as sink:
        gw = mailpipe_factory({
            "hostname": "gw.test",
            "delivery": {"concurrency": CONCURRENCY, "shutdown_grace": "2s"},
            "intake": {"max_connections": 100},
            "chain": [{"smarthost": {"server": sink.host, "port": sink.port, "tls": "none"}},
                      {"retry": {"every": "2s", "expire_after": "1h"}}],
        })
        gw.start()
        load = ResendingLoad(*gw.address, messages=MESSAGES, sessions=SESSIONS, deadline=DEADLINE)

        def killer() -> list[dict[str, int]]:
            """SIGKILL the running gateway at each kill point and start it again; return what each kill hit."""
            kills: list[dict[str, int]] = []
            for point in points:
                if not load.wait_acknowledged(point, f"{point} messages acknowledged before kill {len(kills) + 1}"):
                    return kills
                with load.lock:
                    at = len(load.acked)
                delivered = len(sink.messages)
                assert gw.proc is not None and gw.proc.poll() is None, "the gateway was not running"
                gw.kill()
                assert gw.proc.returncode == -signal.SIGKILL, gw.proc.returncode
                kills.append({"point": point, "acknowledged": at, "delivered": delivered})
                with load.paused():  # no new message until it is back: the load must outlast the next kill
                    gw.start()
            return kills

        started = time.monotonic()
        kills, sent = load.run(killer)
        load_seconds = time.monotonic() - started

        # The kills really happened, each while the clients were still sending.
        assert len(kills) == KILLS, kills
        assert all(k["acknowledged"] < MESSAGES for k in kills), kills
        assert sum(sent) == len(load.acked) == MESSAGES  # clients got every message in, kills or not
        assert gw.proc is not None and gw.proc.poll() is None

        # Deliveries cut by a kill are leased to a dead process: the restart made them due again.
        wait_until(lambda: load.delivered(sink.messages), 90, "every acknowledged message delivered")
        wait_until(lambda: gw.cli_json("queue", "list") == [], 30, "queue drained")
        elapsed = time.monotonic() - started
        assert gw.stop() == 0
        log = gw.log_text()
        starts = log.count("gateway.started:")
        assert starts == KILLS + 1, f"{starts} starts in the serve log, expected the first one and {KILLS} restarts"
        assert log.count("gateway.stopped:") == 1  # only the final stop was clean: every kill was a SIGKILL

        tally = load.tally(sink.messages)
        result = figures(load, tally, concurrency=CONCURRENCY, kills=starts - 1, kills_at=kills,
                         load_seconds=round(load_seconds, 1), seconds=round(elapsed, 1))
        (workdir / "kill_under_load.json").write_text(json.dumps(result, indent=2))
        print("kill under load:", json.dumps(result))
        assert tally.lost == []
        assert tally.unexplained == [], (tally.unexplained, tally.intake_twice)
        assert tally.rfc5321_duplicates <= KILLS * CONCURRENCY, tally.delivered_twice
