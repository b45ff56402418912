"""``pipeline serve`` configured as a smarthost relay to one ``smtp-sink``, on loopback.

A generated YAML in a work dir: intake on ``127.0.0.1:PORT``, the sqlite queue
in the work dir (the default durability: WAL, synchronous=FULL, 250 after the
commit; or another queue, e.g. ``postgres``, given by the caller),
``delivery.concurrency: 20``, a chain of ``smarthost`` (no TLS) and
``retry``, log level warning, ``workers`` as the bench was told (default ``auto``: one
worker process per core, the default of ``pipeline serve``). The process is the installed ``pipeline`` console
script next to ``sys.executable``, run as the tests run it (tests/peers/mailpipe.py),
in a session of its own.
"""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path
from typing import Any

from tests.peers.mailpipe import MailpipeProcess
from tests.peers.net import free_port, tail, wait_until

from .common import BenchError
from .cpu import tree_pids
from .machine import proc_status


def relay_config(workdir: Path, listen: str, sink_port: int, concurrency: int, *,
                 queue: dict[str, Any] | None = None, hostname: str = "mailpipe.bench.test",
                 workers: int | str = "auto") -> dict[str, Any]:
    """The bench's mailpipe: a smarthost relay on ``listen`` to ``127.0.0.1:sink_port``.

    ``queue`` is the ``queue:`` section (default: sqlite in ``workdir``); ``hostname`` names the node;
    ``workers`` the processes that serve (``auto``: one per core).
    """
    return {
        "hostname": hostname,
        "workers": workers,
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
                 hostname: str = "mailpipe.bench.test", workers: int | str = "auto") -> None:
        self.host = host
        self.port = port or free_port(host)
        self.start_timeout = start_timeout
        workdir = Path(workdir)
        config = relay_config(workdir, f"{host}:{self.port}", sink_port, concurrency, queue=queue, hostname=hostname,
                              workers=workers)
        super().__init__(workdir, config, new_session=True)

    def start(self, timeout: float | None = None) -> MailpipeRelay:
        """Start ``pipeline serve`` and wait until it listens (``start_timeout`` unless told otherwise).

        With several workers, "listens" means every worker does: they open their listeners together
        once all are ready (core/workers), and the run must not begin with only some of them.
        """
        try:
            super().start(timeout or self.start_timeout)
            processes = 1 + self.workers if self.workers > 1 else 1
            wait_until(lambda: len(tree_pids(self.proc.pid)) >= processes or not self.alive(),
                       timeout or self.start_timeout, "every worker of pipeline serve", self.log_text)
            wait_until(lambda: self.listening() or not self.alive(), timeout or self.start_timeout,
                       "every worker listening", self.log_text)
        except AssertionError as exc:  # it exited instead of listening
            raise BenchError(str(exc)) from None
        return self

    @property
    def workers(self) -> int:
        """The worker processes this relay runs (1: one process, no supervisor)."""
        from mailpipe.core.settings import worker_count

        return worker_count(self.config.get("workers", "auto"))

    def listening(self) -> bool:
        """Whether every process that serves has a socket listening on the port (read from /proc/net/tcp)."""
        if self.proc is None:
            return False
        pids = tree_pids(self.proc.pid)
        serving = pids[1:] if self.workers > 1 else pids
        return all(_listens(pid, self.port) for pid in serving)

    def peak_rss_kib(self) -> int | None:
        """The peak resident set size so far (VmHWM) of every process of this relay together, in KiB.

        With workers that is the supervisor and each worker: an upper bound of what they held at once.
        """
        if self.proc is None or not self.alive():
            return None
        return sum(proc_status(pid).get("VmHWM", 0) for pid in tree_pids(self.proc.pid)) or None

    def log_tail(self) -> str:
        """The end of the serve log, for an error message."""
        return tail(self.log_path)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, SIGKILL after ``timeout``; the exit status (negative: the signal that ended it)."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            return super().stop(timeout)
        return self.proc.returncode if self.proc is not None else 0


def _listens(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds a TCP socket listening on ``port`` (its fds against /proc/net/tcp)."""
    import os

    try:
        inodes = {os.readlink(f"/proc/{pid}/fd/{fd}")[8:-1] for fd in os.listdir(f"/proc/{pid}/fd")
                  if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:[")}
    except OSError:
        return False
    hexport = f"{port:04X}"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if parts[1].endswith(":" + hexport) and parts[3] == "0A" and parts[9] in inodes:
                        return True
        except OSError:
            continue
    return False
