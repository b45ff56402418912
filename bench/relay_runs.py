"""One measured run: a fresh smtp-sink, the system's relay(s), smtp-source(s) until the sink has every message.

Systems: ``sink`` (smtp-source straight into smtp-sink), ``postfix``, ``mailpipe`` (one
``pipeline serve`` on the sqlite queue), ``postgres`` (one node on a postgres queue in the
bench's private cluster, a fresh database per run) and ``postgres-2nodes`` (two nodes on one
such queue, listening on 127.0.0.1 and 127.0.0.2, each fed by its own smtp-source with its
share of the sessions and messages; both deliver to the one sink). Each run records the
intake and end-to-end times, the nodes' peak RSS, the CPU of every process tree
(bench/cpu.py) and, on postgres, the database's commits and WAL.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path

from rich.progress import Progress

from tests.peers.net import PeerError, wait_until

from .common import BENCH_DIR, RESULTS_DIR, BenchError
from .cpu import CpuAccount
from .machine import loadavg
from .mailpipe_relay import MailpipeRelay
from .pg_cluster import BenchCluster
from .postfix_relay import PostfixRelay
from .postfix_tools import SmtpSink, SmtpSource
from .report import Run
from .spy_profile import PySpy

#: mailpipe systems: (queue, nodes). Node i listens on 127.0.0.i (all of 127.0.0.0/8 is loopback on Linux).
MAILPIPE_SYSTEMS = {"mailpipe": ("sqlite", 1), "postgres": ("postgres", 1), "postgres-2nodes": ("postgres", 2)}
SYSTEMS = ("sink", "postfix", *MAILPIPE_SYSTEMS)
DEFAULT_SYSTEMS = ("sink", "postfix", "mailpipe")


def _label(system: str, sessions: int, size: int) -> str:
    shown = f"{size // 1024} KB" if size % 1024 == 0 else f"{size} B"
    return f"{system:<8} {sessions:>2} × {shown}"


def split(sessions: int, messages: int, targets: int) -> list[tuple[int, int]]:
    """(sessions, messages) for each of ``targets`` listeners: sessions spread evenly, messages in proportion.

    A listener gets no share (0, 0) when there are fewer sessions than listeners.
    """
    shares = [sessions // targets + (1 if i < sessions % targets else 0) for i in range(targets)]
    counts = [messages * share // sessions for share in shares]
    counts[0] += messages - sum(counts)
    return list(zip(shares, counts, strict=True))


Relay = PostfixRelay | MailpipeRelay


class Bench:
    """The relay runs of one bench invocation, each shown as a progress task."""

    def __init__(self, args: argparse.Namespace, progress: Progress, workroot: Path) -> None:
        self.args = args
        self.progress = progress
        self.workroot = workroot
        self.profile_files: list[str] = []
        self.postgres = BenchCluster(workroot / "postgres")

    def start_relays(self, system: str, workdir: Path, sink_port: int, relays: list[Relay]) -> str | None:
        """Start ``system``'s relay(s) to the sink, each appended to ``relays`` before it starts.

        The caller stops every relay in ``relays``, also when one of them failed to start.
        Returns the postgres queue's DSN (None: no postgres).
        """
        if system == "postfix":
            relays.append(PostfixRelay(workdir / "postfix", sink_port).start())
        if system not in MAILPIPE_SYSTEMS:
            return None
        queue_name, count = MAILPIPE_SYSTEMS[system]
        dsn = self.postgres.database(system.replace("-", "_")) if queue_name == "postgres" else None
        for i in range(count):
            queue = {"postgres": {"dsn": dsn, "pool_size": 10}} if dsn else None
            name = "mailpipe" if count == 1 else f"node{i + 1}"
            relay = MailpipeRelay(workdir / name, sink_port, host=f"127.0.0.{i + 1}", queue=queue,
                                  hostname=f"{name}.bench.test", workers=self.args.workers)
            relays.append(relay)
            relay.start()
        return dsn

    def cpu_trees(self, sink: SmtpSink, relays: list[Relay]) -> dict[str, Callable[[], int | None]]:
        """The process trees whose CPU each run accounts for (bench/cpu.py)."""
        trees: dict[str, Callable[[], int | None]] = {"smtp-sink": lambda: sink.proc.pid if sink.proc else None,
                                                      "postgres": lambda: self.postgres.pid}
        for i, relay in enumerate(relays):
            if isinstance(relay, MailpipeRelay):
                trees[f"node{i + 1}"] = lambda relay=relay: relay.pid
            else:
                trees["relay"] = lambda relay=relay: _master_pid(relay)
        return trees

    def run_one(self, system: str, sessions: int, size: int, *, profile: bool = False, round_: int = 1) -> Run:
        """One run of ``system``: its figures, or the reason it failed."""
        args = self.args
        n = args.messages
        run = Run(system, sessions, size, n, round=round_, nodes=MAILPIPE_SYSTEMS.get(system, ("", 0))[1])
        if system in MAILPIPE_SYSTEMS:
            from mailpipe.core.settings import worker_count

            run.workers = worker_count(args.workers)
        label = _label(system, sessions, size) + (" (profiled)" if profile else "")
        if args.repeat > 1:
            label += f" #{round_}"
        task = self.progress.add_task(f"{label}: starting", total=n)
        workdir = self.workroot / f"{system}-{sessions}-{size}-{round_}{'-profiled' if profile else ''}"
        workdir.mkdir(parents=True, exist_ok=True)
        os.chmod(workdir, 0o755)
        sink = SmtpSink(log=workdir / "sink.log")
        relays: list[Relay] = []
        nodes: list[MailpipeRelay] = []
        spies: list[PySpy] = []
        sources: list[SmtpSource] = []
        tag = f"{'' if system == 'mailpipe' else system + '-'}{sessions}x{size // 1024}k"

        def check_nodes() -> None:
            for node in nodes:
                if not node.alive():
                    raise BenchError(f"pipeline serve ({node.host}) died:\n{node.log_tail()}")

        try:
            sink.start()
            dsn = self.start_relays(system, workdir, sink.port, relays)
            nodes = [r for r in relays if isinstance(r, MailpipeRelay)]
            targets = [(r.host, r.port) for r in relays] or [(sink.host, sink.port)]
            if profile:
                for i, node in enumerate(nodes):
                    who = "" if len(nodes) == 1 else f"-node{i + 1}"
                    spies.append(PySpy(node.pid, RESULTS_DIR / f"profile-{tag}{who}-intake.speedscope.json").start())
                time.sleep(0.5)  # py-spy attaches before the first message
            before = self.postgres.counters(dsn) if dsn else {}  # psql: its CPU is not the run's
            cpu = CpuAccount(self.cpu_trees(sink, relays)).start()
            for i, ((host, port), (share, count)) in enumerate(zip(targets, split(sessions, n, len(targets)),
                                                                   strict=True)):
                if share:
                    sources.append(SmtpSource(host, port, messages=count, sessions=share, size=size,
                                              reuse=not args.new_connection_per_message,
                                              log=workdir / f"smtp-source-{i + 1}.log").start())
            t0 = sources[0].started
            self.progress.update(task, description=f"{label}: intake")
            deadline = t0 + args.phase_timeout
            while any(source.poll() is None for source in sources):
                if time.monotonic() > deadline:
                    raise BenchError(f"smtp-source still running after {args.phase_timeout:.0f}s "
                                     f"(sink has {sink.count})")
                check_nodes()
                self.progress.update(task, completed=sink.count)
                time.sleep(0.005)
            for source in sources:
                if source.proc.returncode != 0:
                    raise BenchError(f"smtp-source exited {source.proc.returncode}: "
                                     f"{source.output().strip()[-600:]}")
            ended = max(source.ended or t0 for source in sources)
            run.intake_s = ended - t0
            if spies:  # second recordings for the drain; the first ones are written in the background
                for spy, node in zip(list(spies), nodes, strict=True):
                    spy.proc.send_signal(2)
                    spies.append(PySpy(node.pid, Path(str(spy.out).replace("-intake.", "-drain."))).start())
            self.progress.update(task, description=f"{label}: draining to the sink")
            deadline = ended + args.phase_timeout
            while sink.count < n:
                if time.monotonic() > deadline:
                    raise BenchError(f"the sink has {sink.count} of {n} messages {args.phase_timeout:.0f}s "
                                     "after intake ended")
                check_nodes()
                self.progress.update(task, completed=sink.count)
                time.sleep(0.002)
            run.e2e_s = time.monotonic() - t0
            run.cpu = cpu.stop()
            run.load1 = float(loadavg().split()[0])
            run.node_rss_kib = [rss for rss in (node.peak_rss_kib() for node in nodes) if rss is not None]
            run.peak_rss_kib = max(run.node_rss_kib, default=None)
            if dsn:  # the queue is empty, and the sink counted no duplicates
                wait_until(lambda: self.postgres.pending(dsn) == 0, 30, "the postgres queue to be empty")
                for relay in relays:  # their backends report their last statistics as they exit
                    relay.stop()
                after = self.postgres.counters(dsn)
                run.postgres = {k: after[k] - before[k] for k in after}
            run.sink_count = sink.count
            if run.sink_count != n:
                raise BenchError(f"the sink counted {run.sink_count} messages for {n} sent")
            self.progress.update(task, completed=n, description=f"{label}: intake {run.intake_rate:,.0f}/s, "
                                 f"end-to-end {run.e2e_rate:,.0f}/s")
        except PeerError as exc:  # a BenchError, or a peer that did not start or stop in time
            run.error = str(exc).splitlines()[0][:300]
            detail = str(exc)
            (workdir / "error.txt").write_text(detail)
            self.progress.console.print(f"[red]{label}: {detail[:2000]}[/red]")
            self.progress.update(task, description=f"{label}: FAILED")
        finally:
            for spy in spies:
                if spy.stop():
                    self.profile_files.append(str(spy.out.relative_to(BENCH_DIR.parent)))
            for source in sources:
                source.stop()
            for relay in relays:
                relay.stop()
            sink.stop()
        return run


def _master_pid(relay: PostfixRelay) -> int | None:
    """Postfix's ``master`` PID (its pid file), None when it is not running."""
    try:
        return int(relay.pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


