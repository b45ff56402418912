"""Small helpers shared by the peers: free ports, bounded polling, process ends.

Nothing here sleeps for a fixed time to "let a server come up": every wait
polls a condition and gives up with a clear error after a bound.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

POLL_INTERVAL = 0.02


class PeerError(RuntimeError):
    """A test peer could not be started or stopped."""


def free_port(host: str = "127.0.0.1", kind: int = socket.SOCK_STREAM) -> int:
    """Return a port on ``host`` that nothing is bound to right now (TCP by default)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, kind) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def free_ports(host: str, count: int) -> list[int]:
    """Return ``count`` distinct free TCP ports on ``host`` (held open together while chosen)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    socks = [socket.socket(family, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for s in socks:
            s.bind((host, 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_until(
    condition: Callable[[], bool],
    timeout: float,
    describe: str,
    details: Callable[[], str] | None = None,
) -> None:
    """Poll ``condition`` until it is true; raise :class:`PeerError` after ``timeout`` seconds.

    ``describe`` says what was awaited; ``details`` (called only on timeout)
    adds context such as a log tail to the error.
    """
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return
        if time.monotonic() >= deadline:
            extra = ""
            if details is not None:
                extra = "\n" + details()
            raise PeerError(f"timed out after {timeout:.1f}s waiting for {describe}{extra}")
        time.sleep(POLL_INTERVAL)


def port_accepts(host: str, port: int) -> bool:
    """True when a TCP connection to ``host:port`` succeeds right now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        try:
            s.connect((host, port))
        except OSError:
            return False
        return True


def pid_alive(pid: int) -> bool:
    """True while process ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state is the first field after the parenthesised command name.
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X")


def terminate_pid(pid: int, timeout: float = 5.0) -> None:
    """Send SIGTERM to ``pid`` and wait until it is gone; SIGKILL it after ``timeout``."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        wait_until(lambda: not pid_alive(pid), timeout, f"process {pid} to exit after SIGTERM")
    except PeerError:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        wait_until(lambda: not pid_alive(pid), timeout, f"process {pid} to exit after SIGKILL")


def tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a text file, or a note that it cannot be read."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no log at {path}: {exc})"
    return "\n".join(text.splitlines()[-lines:])


def make_traversable(path: Path) -> None:
    """Create ``path`` and make it and every parent up to ``/`` world-traversable (o+x).

    Postfix and Dovecot drop privileges, so their work directories must be
    reachable by their users; pytest's ``tmp_path`` parents are 0700.
    """
    path.mkdir(parents=True, exist_ok=True)
    for p in (path, *path.parents):
        mode = p.stat().st_mode
        if mode & 0o005 != 0o005:
            os.chmod(p, mode | 0o005)
