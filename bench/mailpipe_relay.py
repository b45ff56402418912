"""``pipeline serve`` configured as a smarthost relay to one ``smtp-sink``, on loopback.

A generated YAML in a work dir: intake on ``127.0.0.1:PORT``, the sqlite queue
in the work dir (the default durability: WAL, synchronous=FULL, 250 after the
commit; or another queue, e.g. ``postgres``, given by the caller),
``delivery.concurrency: 20``, a chain of ``smarthost`` (no TLS) and
``retry``, log level warning. The process is the installed ``pipeline`` console
script next to ``sys.executable``, run as the tests run it (tests/peers/mailpipe.py),
in a session of its own.
"""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path
from typing import Any

from tests.peers.mailpipe import MailpipeProcess
from tests.peers.net import free_port, tail

from .common import BenchError
from .machine import proc_status


def relay_config(workdir: Path, listen: str, sink_port: int, concurrency: int, *,
                 queue: dict[str, Any] | None = None, hostname: str = "mailpipe.bench.test") -> dict[str, Any]:
    """The bench's mailpipe: a smarthost relay on ``listen`` to ``127.0.0.1:sink_port``.

    ``queue`` is the ``queue:`` section (default: sqlite in ``workdir``); ``hostname`` names the node.
    """
    return {
        "hostname": hostname,
        "state_dir": str(workdir / "state"),
        "listen": [listen],
        "relay": {"networks": ["127.0.0.0/8"]},
        "queue": queue or {"sqlite": {"path": str(workdir / "queue.sqlite3")}},
        "delivery": {"send_immediately": True, "concurrency": concurrency, "shutdown_grace": "5s"},
        "chain": [
            {"smarthost": {"server": "127.0.0.1", "port": sink_port, "tls": "none"}},
            {"retry": {"every": "1m", "expire_after": "1h"}},
        ],
        "log": {"level": "warning"},
    }


class MailpipeRelay(MailpipeProcess):
    """One ``pipeline serve -c WORKDIR/mailpipe.yaml`` process; ``peak_rss_kib()`` reads VmHWM."""

    def __init__(self, workdir: Path, sink_port: int, *, host: str = "127.0.0.1", port: int | None = None,
                 concurrency: int = 20, start_timeout: float = 30.0, queue: dict[str, Any] | None = None,
                 hostname: str = "mailpipe.bench.test") -> None:
        self.host = host
        self.port = port or free_port(host)
        self.start_timeout = start_timeout
        workdir = Path(workdir)
        config = relay_config(workdir, f"{host}:{self.port}", sink_port, concurrency, queue=queue, hostname=hostname)
        super().__init__(workdir, config, new_session=True)

    def start(self, timeout: float | None = None) -> MailpipeRelay:
        """Start ``pipeline serve`` and wait until it listens (``start_timeout`` unless told otherwise)."""
        try:
            super().start(timeout or self.start_timeout)
        except AssertionError as exc:  # it exited instead of listening
            raise BenchError(str(exc)) from None
        return self

    def peak_rss_kib(self) -> int | None:
        """The process's peak resident set size so far (VmHWM), in KiB."""
        if self.proc is None or not self.alive():
            return None
        return proc_status(self.proc.pid).get("VmHWM")

    def log_tail(self) -> str:
        """The end of the serve log, for an error message."""
        return tail(self.log_path)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, SIGKILL after ``timeout``; the exit status (negative: the signal that ended it)."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            return super().stop(timeout)
        return self.proc.returncode if self.proc is not None else 0
