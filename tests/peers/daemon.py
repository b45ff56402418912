"""A daemon that forks a master process which leads its own process group: Postfix and Dovecot.

:class:`MasterDaemon` is the start and stop both share. ``start()`` writes the
configuration, runs the daemon's start command, reads the master's pid from its
pid file and waits until every listener accepts; ``stop()`` stops the master's
whole process group and waits until no listener is left. A start that fails
half-way stops what it started. Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import re
import time
from pathlib import Path
from typing import Self

from .net import (
    PeerError,
    kill_leftover,
    pid_alive,
    port_accepts,
    process_start_ticks,
    read_log,
    read_pid_file,
    tail,
    terminate_group,
    wait_until,
)
from .service import Service


class MasterDaemon(Service):
    """Base of the private Postfix and Dovecot instances; subclasses say how to configure and start theirs.

    Subclasses set ``kind`` (for messages), ``log_file`` and ``pid_file`` and implement
    :meth:`listen_ports`, :meth:`_write_config` and :meth:`_launch`; :meth:`_wait_ready`
    may wait for more than the listeners.
    """

    kind = "daemon"
    log_file: Path
    pid_file: Path

    def __init__(self, workdir: Path, host: str, start_timeout: float) -> None:
        self.workdir = Path(workdir)
        self.host = host
        self.start_timeout = start_timeout
        self.startup_seconds: float | None = None
        self._pid: int | None = None
        self._pid_ticks: int | None = None

    def listen_ports(self) -> list[int]:
        """Every TCP port on ``host`` the daemon listens on."""
        raise NotImplementedError

    def _write_config(self) -> None:
        """Called by :meth:`start` first: write the daemon's configuration into ``workdir``."""
        raise NotImplementedError

    def _launch(self) -> None:
        """Called by :meth:`start`: run the command that starts the daemon; raise :class:`PeerError` if it fails."""
        raise NotImplementedError

    def _wait_ready(self) -> None:
        """Called by :meth:`start` once every listener accepts: wait (bounded) for anything else the daemon needs."""

    def start(self) -> Self:
        """Write the configuration, start the daemon and wait until every listener accepts."""
        if self._pid is not None:
            raise PeerError(f"{type(self).__name__} in {self.workdir} is already running")
        began = time.monotonic()
        self._write_config()
        self._launch()
        try:
            self._pid = read_pid_file(self.pid_file, self.start_timeout, self._log_tail)
            self._pid_ticks = process_start_ticks(self._pid)
            self._started(f"{self.kind} in {self.workdir}")
            for port in self.listen_ports():
                wait_until(
                    lambda port=port: port_accepts(self.host, port),
                    self.start_timeout,
                    f"{self.kind} on {self.host}:{port}",
                    self._log_tail,
                )
            self._wait_ready()
        except BaseException:
            if self._pid is None:  # started, but the pid was not seen in time: still stop it
                with contextlib.suppress(PeerError):
                    self._pid = read_pid_file(self.pid_file, 1.0)
                    self._pid_ticks = process_start_ticks(self._pid)
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def stop(self) -> None:
        """Stop the master and its children (the whole group); safe to call twice.

        If stopping raises, the master (and its group) is still killed by pid.
        """
        pid, self._pid = self._pid, None
        self._stopped()
        if pid is not None and pid_alive(pid, self._pid_ticks):
            try:
                terminate_group(pid, start_ticks=self._pid_ticks)
            finally:
                kill_leftover(pid, self._pid_ticks)
            # The master signals its children; wait until none still holds a listener.
            wait_until(
                lambda: not any(port_accepts(self.host, p) for p in self.listen_ports()),
                10,
                f"{self.kind} listeners on {self.host} {self.listen_ports()} to close",
            )

    def log_text(self) -> str:
        """Everything the daemon has logged so far."""
        return read_log(self.log_file)

    def wait_for_log(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        """Wait (bounded) until a log line matches the regex ``pattern``; return the match."""
        rx = re.compile(pattern, re.MULTILINE)
        found: list[re.Match[str]] = []

        def seen() -> bool:
            m = rx.search(self.log_text())
            if m:
                found.append(m)
            return m is not None

        wait_until(seen, timeout, f"{self.kind} log line matching {pattern!r}", self._log_tail)
        return found[0]

    def _log_tail(self) -> str:
        return f"{self.kind} log tail ({self.log_file}):\n{tail(self.log_file)}"
