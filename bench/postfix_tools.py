"""Postfix's load tools: ``smtp-sink`` as the final destination and ``smtp-source`` as the sending side.

``smtp-sink -c`` prints ``sess=S quit=Q mesg=M`` on its standard output (lines
ended by ``\\r``) each time a session ends, a QUIT arrives or a final ``.`` is
received; ``mesg`` counts completed DATA transactions. A reader thread keeps
the last value, so :attr:`SmtpSink.count` is how many messages the sink has
accepted so far. One sink per measured run keeps the counter starting at 0.
(The tests' sink, tests/peers/sink.py, is another thing: an in-process server
that records every message; this one only counts, as fast as Postfix's tool goes.)
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from pathlib import Path
from typing import IO

from tests.peers.net import free_port, port_accepts, wait_until
from tests.peers.service import Service, stop_popen

from .common import BenchError

SMTP_SINK = "/usr/sbin/smtp-sink"
SMTP_SOURCE = "/usr/sbin/smtp-source"
_MESG = re.compile(rb"mesg=(\d+)")


def _output(log: Path | None) -> IO[bytes] | int:
    """Where a tool's output goes: ``log`` (opened for the child; close it once the child has it) or nowhere."""
    return open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115 - closed by the caller


class SmtpSink(Service):
    """``smtp-sink -c 127.0.0.1:PORT BACKLOG``; :attr:`count` = messages received so far."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None, *, backlog: int = 1024,
                 log: Path | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.backlog = backlog
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self._count = 0
        self._reader: threading.Thread | None = None

    @property
    def count(self) -> int:
        """Messages the sink has accepted so far (completed DATA transactions)."""
        return self._count

    def start(self) -> SmtpSink:
        """Start smtp-sink and wait (bounded) until it accepts connections."""
        cmd = [SMTP_SINK, "-c"]
        if os.geteuid() == 0:
            cmd += ["-u", "postfix"]  # smtp-sink refuses to run as root without -u
        # -m: at most this many simultaneous sessions (default 256; we use at most ~40).
        cmd += ["-m", "512", f"{self.host}:{self.port}", str(self.backlog)]
        stderr = _output(self.log)
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        if not isinstance(stderr, int):
            stderr.close()
        self._started("smtp-sink")
        self._reader = threading.Thread(target=self._read, name="smtp-sink-reader", daemon=True)
        self._reader.start()
        proc = self.proc
        wait_until(lambda: port_accepts(self.host, self.port) or proc.poll() is not None, 10,
                   f"smtp-sink on {self.host}:{self.port}")
        if proc.poll() is not None:
            raise BenchError(f"smtp-sink exited with {proc.returncode}: {' '.join(cmd)}")
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        tail = b""
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                return
            if not chunk:
                return
            tail = (tail + chunk)[-256:]
            found = _MESG.findall(tail)
            if found:
                self._count = int(found[-1])

    def stop(self) -> None:
        """Stop smtp-sink (SIGTERM, SIGKILL after 5 s); safe to call twice."""
        self._stopped()
        if self.proc is not None:
            stop_popen(self.proc)
            if self.proc.stdout:
                self.proc.stdout.close()


class SmtpSource(Service):
    """``smtp-source``: ``messages`` messages of ``size`` bytes over ``sessions`` parallel sessions.

    With ``reuse`` (``-d``) each session sends its messages over one connection,
    the way a mail server hands a backlog to its relay; without it every message
    gets a new connection. smtp-source exits after the last ``250`` and QUIT, so
    the time until it exits is the intake time.
    """

    def __init__(self, host: str, port: int, *, messages: int, sessions: int, size: int,
                 reuse: bool = True, log: Path | None = None) -> None:
        self.cmd = [SMTP_SOURCE, "-s", str(sessions), "-m", str(messages), "-l", str(size),
                    "-f", "bench@source.bench.test", "-t", "bench@sink.bench.test", "-M", "source.bench.test"]
        if reuse:
            self.cmd.insert(1, "-d")
        self.cmd.append(f"{host}:{port}")
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.ended: float | None = None

    def start(self) -> SmtpSource:
        """Start sending (``started`` is when); it runs until it has sent everything."""
        out = _output(self.log)
        self.started = time.monotonic()
        self.proc = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        if not isinstance(out, int):
            out.close()
        self._started("smtp-source")
        return self

    def poll(self) -> int | None:
        """The exit code once it has exited (and records when), else None."""
        assert self.proc is not None
        rc = self.proc.poll()
        if rc is not None and self.ended is None:
            self.ended = time.monotonic()
        return rc

    def output(self) -> str:
        """The end of what smtp-source printed (its errors), when it had a log."""
        if self.log is None:
            return ""
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop it if it still runs (SIGTERM, SIGKILL after 2 s); safe to call twice."""
        self._stopped()
        if self.proc is not None:
            stop_popen(self.proc, timeout=2)
