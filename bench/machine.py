"""What the bench records about the machine it ran on, and /proc readings of the processes it measures."""

from __future__ import annotations

import contextlib
import os
import platform
import sqlite3
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from .common import REPO_DIR


def proc_status(pid: int | str = "self") -> dict[str, int]:
    """VmRSS, VmHWM, ... of a process in KiB (from /proc/PID/status); empty once it is gone."""
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
    """The 1, 5 and 15 minute load averages, as /proc/loadavg shows them ("?" when unreadable)."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def proc_meminfo() -> dict[str, int]:
    """/proc/meminfo in KiB."""
    out: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, value = line.split(":", 1)
            out[key] = int(value.split()[0])
    return out


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
