"""Small helpers shared by the peers and the bench: free ports, bounded polling, process ends, logs.

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


def free_port_on_all(hosts: tuple[str, ...], tries: int = 50) -> int:
    """A TCP port that nothing is bound to on any of ``hosts`` right now (for servers sharing one port)."""
    for _ in range(tries):
        port = free_port(hosts[0])
        if all(_bindable(host, port) for host in hosts[1:]):
            return port
    raise PeerError(f"no port free on all of {hosts} after {tries} tries")


def _bindable(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


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


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (state, ppid, pgrp, ...), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()


def process_start_ticks(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot), to tell it from a later process with a reused pid."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


def pid_alive(pid: int, start_ticks: int | None = None) -> bool:
    """True while process ``pid`` exists and is not a zombie.

    With ``start_ticks`` (from :func:`process_start_ticks`), a process that
    merely reuses the pid does not count.
    """
    fields = _stat_fields(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return False
    return start_ticks is None or int(fields[19]) == start_ticks


def terminate_pid(pid: int, timeout: float = 5.0, start_ticks: int | None = None) -> None:
    """Send SIGTERM to ``pid`` and wait until it is gone; SIGKILL it after ``timeout``."""
    if not pid_alive(pid, start_ticks):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        wait_until(lambda: not pid_alive(pid, start_ticks), timeout, f"process {pid} to exit after SIGTERM")
    except PeerError:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        wait_until(lambda: not pid_alive(pid, start_ticks), timeout, f"process {pid} to exit after SIGKILL")


def kill_leftover(pid: int, start_ticks: int | None = None) -> None:
    """Last resort after a stop that failed or raised: SIGKILL ``pid`` (and its process group if it leads one).

    With ``start_ticks`` a process that merely reuses the pid is left alone. Never raises.
    """
    if not pid_alive(pid, start_ticks):
        return
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()  # state, ppid, pgrp, ...
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def terminate_group(leader: int, timeout: float = 5.0, start_ticks: int | None = None) -> None:
    """Stop a daemon that leads its own process group (Postfix's or Dovecot's master).

    SIGTERM goes to the whole group at once (Dovecot's master otherwise waits
    ~5 s for its children). Once the leader is gone, whatever is left of the
    group (e.g. a child forked by Postfix's master that has not exec'd yet
    and still holds the listening sockets) gets SIGKILL. Only this group's
    processes are signalled; a leader that is not a group leader just gets
    :func:`terminate_pid`. Pass ``start_ticks`` (taken when the daemon was
    started) so that a long-dead daemon whose pid was reused is left alone.
    """
    if not pid_alive(leader, start_ticks):
        return
    try:
        pgid = os.getpgid(leader)
    except ProcessLookupError:
        return
    if pgid != leader:
        terminate_pid(leader, timeout, start_ticks)
        return
    # Repeat SIGTERM to the group: a master that is just spawning a child
    # (e.g. Dovecot's auth, started on demand) would otherwise wait ~5 s for
    # that child, which missed the first signal. A leader left alone for a
    # while (Dovecot's master sleeps ~1 s between checks on its children
    # while shutting down) gets SIGKILL: it has nothing left to do.
    last_signal = 0.0
    alone_since: float | None = None

    def leader_gone() -> bool:
        nonlocal last_signal, alone_since
        if not pid_alive(leader, start_ticks):
            return True
        now = time.monotonic()
        if group_members(pgid) == [leader]:
            alone_since = alone_since or now
            if now - alone_since >= 0.1:
                os.kill(leader, signal.SIGKILL)
                return False
        else:
            alone_since = None
        if now - last_signal >= 0.1:
            last_signal = now
            try:
                os.killpg(pgid, signal.SIGTERM)
            except ProcessLookupError:
                return True
        return False

    try:
        wait_until(leader_gone, timeout, f"process group {pgid} leader to exit")
    except PeerError:
        pass
    if group_members(pgid):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            return
    wait_until(lambda: not group_members(pgid), timeout, f"process group {pgid} to exit after SIGKILL")


def read_pid_file(path: Path, timeout: float, details: Callable[[], str] | None = None) -> int:
    """Wait (bounded) until ``path`` holds a process id (daemons create it empty first); return it."""
    found: list[int] = []

    def has_pid() -> bool:
        try:
            words = path.read_text().split()
        except OSError:
            return False
        if words and words[0].isdigit():
            found.append(int(words[0]))
            return True
        return False

    wait_until(has_pid, timeout, f"a process id in {path}", details)
    return found[0]


def read_log(path: Path) -> str:
    """Everything a peer has written to its log file so far ("" before it wrote anything)."""
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


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
