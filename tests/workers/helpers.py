"""Shared by the workers tests: a supervised ``pipeline serve`` and its worker processes."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from tests.peers.mailpipe import MailpipeProcess
from tests.peers.net import wait_until

SERVING = re.compile(r"mailpipe serving with (\d+) workers \(pids ([0-9, ]+)\)")


def children(pid: int) -> list[int]:
    """The live child processes of ``pid`` (one scan of /proc)."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if int(fields[1]) == pid and fields[0] not in ("Z", "X"):
            found.append(int(entry.name))
    return sorted(found)


def relay_config(sink: Any, workers: int = 2, **extra: Any) -> dict[str, Any]:
    """A gateway relaying to ``sink`` (a RecordingSink) with ``workers`` worker processes."""
    return {
        "hostname": "gw.test",
        "workers": workers,
        "delivery": {"concurrency": 10, "shutdown_grace": "5s"},
        "chain": [{"smarthost": {"server": sink.host, "port": sink.port, "tls": "none"}},
                  {"retry": {"every": "2s", "expire_after": "1h"}}],
        **extra,
    }


def serving(gw: MailpipeProcess, workers: int, starts: int = 1, timeout: float = 60.0) -> list[int]:
    """Wait until the supervisor says all ``workers`` serve (the ``starts``-th time); their pids."""
    def found() -> list[re.Match[str]]:
        return list(SERVING.finditer(gw.log_text()))

    wait_until(lambda: len(found()) >= starts or not gw.alive(), timeout, "every worker serving", gw.log_text)
    assert gw.alive(), gw.log_text()
    match = found()[starts - 1]
    assert int(match.group(1)) == workers, match.group(0)
    return [int(p) for p in match.group(2).split(",")]


def worker_pids(gw: MailpipeProcess) -> list[int]:
    """The worker processes of a running supervised gateway."""
    assert gw.proc is not None
    return children(gw.proc.pid)


def worker_pid(gw: MailpipeProcess, index: int) -> int:
    """The process of worker ``index`` now (read from the workers' command lines: ``--worker I/N@PID``)."""
    for pid in worker_pids(gw):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"--worker" in argv and argv[argv.index(b"--worker") + 1].split(b"/")[0] == str(index).encode():
            return pid
    raise AssertionError(f"no worker {index} among {worker_pids(gw)}")
