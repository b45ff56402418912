"""Where the CPU went during one run: each measured process tree, the bench itself, and the rest of the machine.

A :class:`CpuAccount` is read once when a run starts and once when it ends (no
sampling in between, so it costs the run nothing):

- a *process tree* (``pipeline serve``, the PostgreSQL postmaster, Postfix's
  ``master``, ``smtp-sink``) counts its own CPU time (``utime + stime`` in
  /proc/PID/stat), what it has collected from children that exited
  (``cutime + cstime``) and the same for each live descendant. A child's time
  moves into its parent's ``cutime`` when it is reaped, at which moment it is no
  longer live, so nothing is counted twice and short-lived children (Postfix's
  smtpd, PostgreSQL's autovacuum workers) are not lost;
- ``smtp-source`` runs as the bench's own child and exits before the run ends:
  it is the difference in the bench's ``RUSAGE_CHILDREN``, into which a child's
  time moves when the bench reaps it (nothing else the bench started exits
  during a run);
- the bench itself (its polling loop and the sink's reader thread): ``RUSAGE_SELF``;
- the machine: busy time from /proc/stat over all CPUs; what none of the above
  used is *other* (other jobs on a shared machine).

Figures are CPU seconds; divided by the run's wall time they are cores busy on average.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Callable
from pathlib import Path

from tests.peers.net import _stat_fields  # the fields of /proc/PID/stat after the command name, or None

TICK = os.sysconf("SC_CLK_TCK")


def _own_and_reaped(fields: list[str]) -> float:
    """utime + stime + cutime + cstime, in seconds (fields 14-17 of /proc/PID/stat)."""
    return sum(int(v) for v in fields[11:15]) / TICK


def _parents() -> dict[int, list[int]]:
    """Every live process's children, by parent PID (one scan of /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def tree_pids(pid: int) -> list[int]:
    """``pid`` and its live descendants (a supervised ``pipeline serve``: the master and its workers)."""
    children = _parents()
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo += children.get(current, [])
    return out


def tree_cpu_seconds(pid: int, children: dict[int, list[int]] | None = None) -> float:
    """CPU seconds used so far by ``pid``, its reaped children and its live descendants (0 if it is gone)."""
    children = _parents() if children is None else children
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        fields = _stat_fields(current)
        if fields is None:
            continue
        total += _own_and_reaped(fields)
        todo += children.get(current, [])
    return total


def machine_busy_seconds() -> float:
    """CPU seconds all CPUs have spent on anything but idle and iowait since boot (/proc/stat)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / TICK


def _rusage_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


class CpuAccount:
    """CPU seconds of named process trees between :meth:`start` and :meth:`stop`.

    ``trees`` maps a name (``"node1"``, ``"postgres"``, ``"smtp-sink"``) to a function
    giving the root PID (None: not running). The result of :meth:`stop` also holds
    ``smtp-source`` (the bench's children reaped during the run), ``bench`` (this
    process), ``machine`` (all CPUs) and ``other`` (machine minus everything named).
    """

    def __init__(self, trees: dict[str, Callable[[], int | None]]) -> None:
        self.trees = trees
        self._start: dict[str, float] = {}

    def _read(self) -> dict[str, float]:
        children = _parents()
        out = {}
        for name, root in self.trees.items():
            pid = root()
            out[name] = tree_cpu_seconds(pid, children) if pid else 0.0
        out["smtp-source"] = _rusage_seconds(resource.RUSAGE_CHILDREN)
        out["bench"] = _rusage_seconds(resource.RUSAGE_SELF)
        out["machine"] = machine_busy_seconds()
        return out

    def start(self) -> CpuAccount:
        """Read every counter now (call it just before the load starts)."""
        self._start = self._read()
        return self

    def stop(self) -> dict[str, float]:
        """CPU seconds since :meth:`start`, by name, plus ``other`` (call it before stopping anything)."""
        end = self._read()
        used = {name: max(0.0, end[name] - self._start.get(name, 0.0)) for name in end}
        named = sum(v for k, v in used.items() if k != "machine")
        used["other"] = max(0.0, used["machine"] - named)
        return {k: round(v, 3) for k, v in used.items()}
