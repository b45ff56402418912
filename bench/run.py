"""mailpipe against Postfix, side by side, on this machine: ``python -m bench.run [--messages N] [--quick]``.

Run it from the repository root (it imports the test-support package, tests/peers).

For each number of sessions (1, 20) and message size (4 KB, 100 KB):

1. ``smtp-source`` straight into ``smtp-sink``: the sink's ceiling;
2. ``smtp-source`` → a private Postfix relaying to ``smtp-sink``;
3. ``smtp-source`` → ``pipeline serve`` (smarthost to ``smtp-sink``);

each with a fresh sink, relay and queue. Intake rate = messages ÷ time until
smtp-source has exited (after its last 250 and QUIT); end-to-end rate =
messages ÷ time until the sink has counted them all. Then the queue scaling
measurements (queue_scaling.py). One table is printed and written to
bench/RESULTS.md with the machine's description; raw figures go to
bench/results/ (git-ignored). ``--profile`` adds one more mailpipe run (20
sessions × 4 KB, not in the table) under py-spy.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from tests.peers.net import PeerError
from tests.peers.service import RUNNING

from . import queue_scaling
from .common import BENCH_DIR, RESULTS_DIR, BenchError, install_signal_handlers
from .machine import loadavg, machine
from .mailpipe_relay import MailpipeRelay
from .postfix_relay import PostfixRelay
from .postfix_tools import SMTP_SINK, SMTP_SOURCE, SmtpSink, SmtpSource
from .report import Report, Run, print_report, write_markdown
from .spy_profile import PySpy, py_spy_path, summarise

SYSTEMS = ("sink", "postfix", "mailpipe")


def _ints(text: str) -> list[int]:
    out = []
    for part in text.split(","):
        part = part.strip().upper()
        mult = 1
        if part.endswith("K"):
            part, mult = part[:-1], 1024
        out.append(int(float(part) * mult))
    return out


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.run",
                                 description="mailpipe vs Postfix relay benchmark, and queue scaling.")
    ap.add_argument("--messages", type=int, help="messages per run (default 5000; 1000 with --quick)")
    ap.add_argument("--quick", action="store_true",
                    help="1,000 messages per run, queue scaling up to 100,000 (about 2 minutes)")
    ap.add_argument("--sessions", default="1,20", help="comma-separated smtp-source session counts (1,20)")
    ap.add_argument("--sizes", default="4K,100K", help="comma-separated message sizes (4K,100K)")
    ap.add_argument("--systems", default=",".join(SYSTEMS), help="which of sink,postfix,mailpipe to run")
    ap.add_argument("--scaling-sizes", help="queued messages for queue scaling (100,100000,1000000; "
                    "100,10000,100000 with --quick)")
    ap.add_argument("--scaling-body", type=int, default=4096, help="body size of the pre-filled messages")
    ap.add_argument("--no-relay", action="store_true", help="skip the relay runs")
    ap.add_argument("--no-scaling", action="store_true", help="skip queue scaling")
    ap.add_argument("--profile", action="store_true",
                    help="one extra mailpipe run (20 × 4 KB) under py-spy; results in bench/results/")
    ap.add_argument("--new-connection-per-message", action="store_true",
                    help="smtp-source without -d: one connection per message instead of one per session")
    ap.add_argument("--timeout", type=float, help="bound for each phase of a run, seconds "
                    "(default max(120, messages/10))")
    ap.add_argument("--note", action="append", default=[], help="a line to add to RESULTS.md (repeatable)")
    ap.add_argument("--output", type=Path, default=BENCH_DIR / "RESULTS.md")
    ap.add_argument("--keep", action="store_true", help="keep the temporary work directory (logs, queues)")
    args = ap.parse_args()
    args.messages = args.messages or (1000 if args.quick else 5000)
    args.scaling_sizes = _ints(args.scaling_sizes or ("100,10000,100000" if args.quick else "100,100000,1000000"))
    args.session_list = _ints(args.sessions)
    args.size_list = _ints(args.sizes)
    args.system_list = [s.strip() for s in args.systems.split(",") if s.strip()]
    for s in args.system_list:
        if s not in SYSTEMS:
            ap.error(f"unknown system {s!r}; choose from {', '.join(SYSTEMS)}")
    args.phase_timeout = args.timeout or max(120.0, args.messages / 10)
    return args


def _label(system: str, sessions: int, size: int) -> str:
    shown = f"{size // 1024} KB" if size % 1024 == 0 else f"{size} B"
    return f"{system:<8} {sessions:>2} × {shown}"


class Bench:
    """The relay runs of one bench invocation, each shown as a progress task."""

    def __init__(self, args: argparse.Namespace, progress: Progress, workroot: Path) -> None:
        self.args = args
        self.progress = progress
        self.workroot = workroot
        self.profile_files: list[str] = []

    def run_one(self, system: str, sessions: int, size: int, *, profile: bool = False) -> Run:
        """One run of ``system`` (sink, postfix or mailpipe): its figures, or the reason it failed."""
        args = self.args
        n = args.messages
        run = Run(system, sessions, size, n)
        label = _label(system, sessions, size) + (" (profiled)" if profile else "")
        task = self.progress.add_task(f"{label}: starting", total=n)
        workdir = self.workroot / f"{system}-{sessions}-{size}{'-profiled' if profile else ''}"
        workdir.mkdir(parents=True, exist_ok=True)
        os.chmod(workdir, 0o755)
        sink = SmtpSink(log=workdir / "sink.log")
        relay: PostfixRelay | MailpipeRelay | None = None
        spies: list[PySpy] = []
        source: SmtpSource | None = None
        try:
            sink.start()
            if system == "postfix":
                relay = PostfixRelay(workdir / "postfix", sink.port).start()
            elif system == "mailpipe":
                relay = MailpipeRelay(workdir / "mailpipe", sink.port).start()
            port = relay.port if relay else sink.port
            tag = f"{sessions}x{size // 1024}k"
            if profile and isinstance(relay, MailpipeRelay):
                out = RESULTS_DIR / f"profile-{tag}-intake.speedscope.json"
                spies.append(PySpy(relay.pid, out).start())
                time.sleep(0.5)  # py-spy attaches before the first message
            source = SmtpSource("127.0.0.1", port, messages=n, sessions=sessions, size=size,
                            reuse=not args.new_connection_per_message, log=workdir / "smtp-source.log").start()
            t0 = source.started
            self.progress.update(task, description=f"{label}: intake")
            deadline = t0 + args.phase_timeout
            while source.poll() is None:
                now = time.monotonic()
                if now > deadline:
                    raise BenchError(f"smtp-source still running after {args.phase_timeout:.0f}s "
                                     f"(sink has {sink.count})")
                if isinstance(relay, MailpipeRelay) and not relay.alive():
                    raise BenchError(f"pipeline serve died:\n{relay.log_tail()}")
                self.progress.update(task, completed=sink.count)
                time.sleep(0.005)
            if source.proc.returncode != 0:
                raise BenchError(f"smtp-source exited {source.proc.returncode}: {source.output().strip()[-600:]}")
            run.intake_s = source.ended - t0
            if spies:  # second recording for the drain; the first one is written in the background
                spies[0].proc.send_signal(2)
                spies.append(PySpy(relay.pid, RESULTS_DIR / f"profile-{tag}-drain.speedscope.json").start())
            self.progress.update(task, description=f"{label}: draining to the sink")
            deadline = source.ended + args.phase_timeout
            while sink.count < n:
                now = time.monotonic()
                if now > deadline:
                    raise BenchError(f"the sink has {sink.count} of {n} messages {args.phase_timeout:.0f}s "
                                     "after intake ended")
                if isinstance(relay, MailpipeRelay) and not relay.alive():
                    raise BenchError(f"pipeline serve died:\n{relay.log_tail()}")
                self.progress.update(task, completed=sink.count)
                time.sleep(0.002)
            run.e2e_s = time.monotonic() - t0
            if isinstance(relay, MailpipeRelay):
                run.peak_rss_kib = relay.peak_rss_kib()
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
            if source is not None:
                source.stop()
            if relay is not None:
                relay.stop()
            sink.stop()
        return run


def main() -> int:
    """Run the bench as the command line says; 0 all runs finished, 1 a run failed, 130 interrupted."""
    args = parse_args()
    install_signal_handlers()
    console = Console()
    for tool in (SMTP_SOURCE, SMTP_SINK, "/usr/sbin/postfix"):
        if not os.access(tool, os.X_OK):
            console.print(f"[red]{tool} is missing: apt-get install postfix[/red]")
            return 2
    if args.profile and not py_spy_path():
        console.print("[red]--profile needs py-spy: pip install py-spy[/red]")
        return 2
    RESULTS_DIR.mkdir(exist_ok=True)
    workroot = Path(tempfile.mkdtemp(prefix="mailpipe-bench-"))
    os.chmod(workroot, 0o755)  # Postfix's users must traverse it
    if not args.keep:
        RUNNING.add("work directory", lambda: shutil.rmtree(workroot, ignore_errors=True))
    command = "python -m bench.run " + shlex.join(sys.argv[1:])
    rep = Report(machine=machine(), command=command.strip(), messages=args.messages,
                 reuse=not args.new_connection_per_message, scaling_body=args.scaling_body,
                 load_before=loadavg(), notes=list(args.note))
    console.print(f"[bold]mailpipe bench[/bold]: {args.messages:,} messages per run; work dir {workroot}; "
                  f"load average {rep.load_before}")
    interrupted = False
    progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=console, refresh_per_second=4)
    bench = Bench(args, progress, workroot)
    try:
        with progress:
            if not args.no_relay:
                scenarios = [(s, z) for s in args.session_list for z in args.size_list]
                overall = progress.add_task("relay runs", total=len(scenarios) * len(args.system_list))
                for sessions, size in scenarios:
                    for system in args.system_list:
                        rep.runs.append(bench.run_one(system, sessions, size))
                        progress.advance(overall)
                if args.profile and "mailpipe" in args.system_list:
                    prof = bench.run_one("mailpipe", 20, 4096, profile=True)
                    rep.notes.append(f"The profiled run (py-spy, not in the table) went at intake "
                                     f"{(prof.intake_rate or 0):,.0f}/s, end-to-end {(prof.e2e_rate or 0):,.0f}/s.")
            if not args.no_scaling:
                fill = progress.add_task("queue scaling", total=max(args.scaling_sizes))

                def on_fill(size: int, have: int, target: int) -> None:
                    progress.update(fill, completed=have)

                def on_phase(text: str) -> None:
                    progress.update(fill, description=f"queue scaling: {text}")

                rep.scaling = queue_scaling.run_scaling(workroot, args.scaling_sizes, body_size=args.scaling_body,
                                                        on_fill=on_fill, on_phase=on_phase)
                progress.update(fill, completed=max(args.scaling_sizes), description="queue scaling: done")
    except KeyboardInterrupt:
        interrupted = True
        console.print("[yellow]interrupted: stopping everything started[/yellow]")
    except PeerError as exc:
        interrupted = True
        console.print(f"[red]{exc}[/red]")
    finally:
        RUNNING.run_all()
    rep.profile_files = bench.profile_files
    rep.load_after = loadavg()
    cores = os.cpu_count() or 1
    busiest = max(float(rep.load_before.split()[0]), float(rep.load_after.split()[0]))
    if busiest > cores * 0.5:
        rep.notes.append(f"The machine was busy with other work (1-minute load average {rep.load_before} before, "
                         f"{rep.load_after} after, on {cores} cores): figures are noisy; compare ratios, not "
                         "absolute rates, and re-run on an idle machine before drawing fine conclusions.")
    if interrupted:
        rep.notes.append("INCOMPLETE: the run was interrupted or failed; only finished runs are shown.")
    print_report(rep, console)
    write_markdown(rep, args.output)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (RESULTS_DIR / f"results-{stamp}.json").write_text(json.dumps(
        {"machine": rep.machine, "command": rep.command, "runs": [asdict(r) for r in rep.runs],
         "scaling": rep.scaling, "notes": rep.notes}, indent=2))
    console.print(f"written: {args.output}, {RESULTS_DIR / f'results-{stamp}.json'}")
    for f in bench.profile_files:
        path = BENCH_DIR.parent / f
        if path.exists():
            text = summarise(path)
            summary = path.with_name(path.name.replace(".speedscope.json", ".top.txt"))
            summary.write_text(text)
            console.print(f"profile summary: {summary}")
            console.print("\n".join(text.splitlines()[:45]))
    if args.keep:
        console.print(f"work directory kept: {workroot}")
    if interrupted:
        return 130
    return 1 if any(r.error for r in rep.runs) else 0


if __name__ == "__main__":
    sys.exit(main())
