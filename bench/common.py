"""Small helpers shared by the bench modules: ports, bounded waits, process ends, /proc readings.

Every wait here polls a condition with a deadline; nothing sleeps a fixed time
to "let a server come up". Every process the bench starts is registered with
:data:`CLEANUP` so that it is stopped on normal exit, on an exception and on
Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import platform
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
POLL = 0.02


class BenchError(RuntimeError):
    """Something the bench needs did not start or did not finish in time."""


# -- ports and waits ---------------------------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing is bound to right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_accepts(host: str, port: int) -> bool:
    """True when a TCP connection to ``host:port`` succeeds right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        try:
            s.connect((host, port))
        except OSError:
            return False
        return True


def wait_until(condition: Callable[[], bool], timeout: float, what: str,
               details: Callable[[], str] | None = None) -> None:
    """Poll ``condition`` until true; raise :class:`BenchError` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            extra = ("\n" + details()) if details else ""
            raise BenchError(f"timed out after {timeout:.0f}s waiting for {what}{extra}")
        time.sleep(POLL)


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# -- processes ---------------------------------------------------------------------------------


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def stop_group(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM the process group led by ``pid`` (or ``pid`` alone), SIGKILL what is left after ``timeout``."""
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return
    group = pgid == pid

    def send(sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if group:
                os.killpg(pgid, sig)
            else:
                os.kill(pid, sig)

    send(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(POLL)
    send(signal.SIGKILL)  # the group's stragglers (or a leader that ignored SIGTERM)
    deadline = time.monotonic() + 5
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(POLL)
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


class Cleanup:
    """Stop callbacks, run last-registered first; run at exit at the latest."""

    def __init__(self) -> None:
        self._stops: dict[int, tuple[str, Callable[[], None]]] = {}
        self._next = 0

    def add(self, what: str, stop: Callable[[], None]) -> int:
        self._next += 1
        self._stops[self._next] = (what, stop)
        return self._next

    def done(self, key: int) -> None:
        self._stops.pop(key, None)

    def run_all(self) -> None:
        for key in sorted(self._stops, reverse=True):
            what, stop = self._stops.pop(key)
            try:
                stop()
            except Exception as exc:  # noqa: BLE001 - keep stopping the others
                print(f"bench: stopping {what} failed: {exc}", file=sys.stderr)


CLEANUP = Cleanup()
atexit.register(CLEANUP.run_all)


def install_signal_handlers() -> None:
    """SIGTERM and SIGHUP behave like Ctrl-C: unwind, stop everything started."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handler)


# -- /proc readings -----------------------------------------------------------------------------


def proc_status(pid: int | str = "self") -> dict[str, int]:
    """VmRSS, VmHWM, ... of a process in KiB (from /proc/PID/status)."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Vm"):
                    key, value = line.split(":", 1)
                    out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "-"


def _run(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def machine() -> dict[str, str]:
    """A description of this machine and of the software measured."""
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = proc_meminfo().get("MemTotal", 0)
    postfix = _run(["postconf", "-d", "-h", "mail_version"]) or "?"
    head = _run(["git", "-C", str(REPO_DIR), "rev-parse", "--short", "HEAD"]) or "?"
    dirty = _run(["git", "-C", str(REPO_DIR), "status", "--porcelain", "--untracked-files=no"])
    changed = len(dirty.splitlines()) if dirty else 0
    os_name = "?"
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip('"')
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": f"{mem / 1024 / 1024:.1f} GiB",
        "os": f"{os_name}, Linux {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "postfix": postfix,
        "sqlite": sqlite3.sqlite_version,
        "mailpipe": f"{_version('mailpipe')} (git {head}{f', {changed} files modified' if changed else ''})",
        "libraries": f"aiosmtpd {_version('aiosmtpd')}, aiosmtplib {_version('aiosmtplib')}, "
                     f"uvloop {_version('uvloop')}",
    }


def proc_meminfo() -> dict[str, int]:
    out: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, value = line.split(":", 1)
            out[key] = int(value.split()[0])
    return out
