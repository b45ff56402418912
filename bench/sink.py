"""``smtp-sink`` (ships with Postfix) as the final destination, counting the messages it has received.

``smtp-sink -c`` prints ``sess=S quit=Q mesg=M`` on its standard output (lines
ended by ``\\r``) each time a session ends, a QUIT arrives or a final ``.`` is
received; ``mesg`` counts completed DATA transactions. A reader thread keeps
the last value, so :meth:`Sink.count` is how many messages the sink has
accepted so far. One sink per measured run keeps the counter starting at 0.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from pathlib import Path

from common import CLEANUP, BenchError, free_port, port_accepts, stop_group, wait_until

SMTP_SINK = "/usr/sbin/smtp-sink"
_MESG = re.compile(rb"mesg=(\d+)")


class Sink:
    """``smtp-sink -c 127.0.0.1:PORT BACKLOG``; ``count`` = messages received so far."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None, *, backlog: int = 1024,
                 log: Path | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.backlog = backlog
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self._count = 0
        self._reader: threading.Thread | None = None
        self._cleanup_key: int | None = None

    @property
    def count(self) -> int:
        return self._count

    def start(self) -> Sink:
        cmd = [SMTP_SINK, "-c"]
        if os.geteuid() == 0:
            cmd += ["-u", "postfix"]  # smtp-sink refuses to run as root without -u
        # -m: at most this many simultaneous sessions (default 256; we use at most ~40).
        cmd += ["-m", "512", f"{self.host}:{self.port}", str(self.backlog)]
        stderr = open(self.log, "wb") if self.log else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        if self.log:
            stderr.close()  # type: ignore[union-attr]
        self._cleanup_key = CLEANUP.add("smtp-sink", self.stop)
        self._reader = threading.Thread(target=self._read, name="smtp-sink-reader", daemon=True)
        self._reader.start()
        wait_until(lambda: port_accepts(self.host, self.port) or self.proc.poll() is not None, 10,
                   f"smtp-sink on {self.host}:{self.port}")
        if self.proc.poll() is not None:
            raise BenchError(f"smtp-sink exited with {self.proc.returncode}: {' '.join(cmd)}")
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

    def wait_for(self, n: int, timeout: float) -> float:
        """Block until the sink has ``n`` messages; return the monotonic time it was seen."""
        deadline = time.monotonic() + timeout
        while self._count < n:
            if time.monotonic() >= deadline:
                raise BenchError(f"the sink has {self._count} of {n} messages after {timeout:.0f}s")
            time.sleep(0.005)
        return time.monotonic()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            stop_group(self.proc.pid, timeout=5)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            if self.proc.stdout:
                self.proc.stdout.close()
        if self._cleanup_key is not None:
            CLEANUP.done(self._cleanup_key)
            self._cleanup_key = None

    def __enter__(self) -> Sink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Source:
    """``smtp-source``: ``messages`` messages of ``size`` bytes over ``sessions`` parallel sessions.

    With ``reuse`` (``-d``) each session sends its messages over one connection,
    the way a mail server hands a backlog to its relay; without it every message
    gets a new connection. smtp-source exits after the last ``250`` and QUIT, so
    the time until it exits is the intake time.
    """

    def __init__(self, host: str, port: int, *, messages: int, sessions: int, size: int,
                 reuse: bool = True, log: Path | None = None) -> None:
        self.cmd = ["/usr/sbin/smtp-source", "-s", str(sessions), "-m", str(messages), "-l", str(size),
                    "-f", "bench@source.bench.test", "-t", "bench@sink.bench.test", "-M", "source.bench.test"]
        if reuse:
            self.cmd.insert(1, "-d")
        self.cmd.append(f"{host}:{port}")
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.ended: float | None = None
        self._cleanup_key: int | None = None

    def start(self) -> Source:
        out = open(self.log, "wb") if self.log else subprocess.DEVNULL  # noqa: SIM115
        self.started = time.monotonic()
        self.proc = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        if self.log:
            out.close()  # type: ignore[union-attr]
        self._cleanup_key = CLEANUP.add("smtp-source", self.stop)
        return self

    def poll(self) -> int | None:
        """The exit code once it has exited (and records when), else None."""
        assert self.proc is not None
        rc = self.proc.poll()
        if rc is not None and self.ended is None:
            self.ended = time.monotonic()
        return rc

    def output(self) -> str:
        if self.log is None:
            return ""
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            stop_group(self.proc.pid, timeout=2)
        if self._cleanup_key is not None:
            CLEANUP.done(self._cleanup_key)
            self._cleanup_key = None
