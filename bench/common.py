"""What every bench module shares: where results go, the bench's error, and signals that unwind a run.

Ports, bounded waits and process ends come from the test-support package
(tests/peers/net.py, tests/peers/service.py): every process the bench starts is
listed in :data:`tests.peers.service.RUNNING`, so it is stopped on normal exit,
on an exception and on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import signal
from pathlib import Path

from tests.peers.net import PeerError

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"


class BenchError(PeerError):
    """Something the bench needs did not start or did not finish in time (as does a peer's :class:`PeerError`)."""


def install_signal_handlers() -> None:
    """SIGTERM and SIGHUP behave like Ctrl-C: unwind, stop everything started."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handler)
