"""mailpipe against Postfix, side by side, on this machine: ``python -m bench.run [--messages N] [--quick]``.

Run it from the repository root (it imports the test-support package, tests/peers).

For each number of sessions (1, 20) and message size (4 KB, 100 KB):

1. ``smtp-source`` straight into ``smtp-sink``: the sink's ceiling;
2. ``smtp-source`` → a private Postfix relaying to ``smtp-sink``;
3. ``smtp-source`` → ``pipeline serve`` (smarthost to ``smtp-sink``);
4. with ``--postgres``: ``pipeline serve`` on a postgres queue (a private PostgreSQL
   cluster, a fresh database per run), and two such nodes on one queue, listening on
   127.0.0.1 and 127.0.0.2, each fed by its own ``smtp-source`` with half the sessions;

each with a fresh sink, relay and queue, ``--repeat`` times (the rounds interleaved).
Intake rate = messages ÷ time until the last smtp-source has exited (after its last
250 and QUIT); end-to-end rate = messages ÷ time until the sink has counted them
all. Every run also accounts for the CPU each process tree used (bench/cpu.py).
Then the queue scaling measurements (queue_scaling.py). The tables are printed and
written to bench/RESULTS.md (or one ``--section`` of it) with the machine's
description; raw figures go to bench/results/ (git-ignored). ``--profile`` adds one
more run (20 sessions × 4 KB, not in the table) under py-spy.
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
from .common import BENCH_DIR, RESULTS_DIR, install_signal_handlers
from .machine import loadavg, machine
from .markdown import write_markdown
from .postfix_tools import SMTP_SINK, SMTP_SOURCE
from .relay_runs import DEFAULT_SYSTEMS, MAILPIPE_SYSTEMS, SYSTEMS, Bench
from .report import POSTGRES_SETUPS, Report, print_report
from .spy_profile import py_spy_path, summarise


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
    """The command line (see bench/README.md)."""
    ap = argparse.ArgumentParser(prog="python -m bench.run",
                                 description="mailpipe vs Postfix relay benchmark, and queue scaling.")
    ap.add_argument("--messages", type=int, help="messages per run (default 5000; 1000 with --quick)")
    ap.add_argument("--quick", action="store_true",
                    help="1,000 messages per run, queue scaling up to 100,000 (about 2 minutes)")
    ap.add_argument("--sessions", default="1,20", help="comma-separated smtp-source session counts (1,20)")
    ap.add_argument("--sizes", default="4K,100K", help="comma-separated message sizes (4K,100K)")
    ap.add_argument("--systems", default=",".join(DEFAULT_SYSTEMS),
                    help=f"which of {','.join(SYSTEMS)} to run (default {','.join(DEFAULT_SYSTEMS)})")
    ap.add_argument("--postgres", action="store_true",
                    help="add postgres,postgres-2nodes to --systems: mailpipe on a private PostgreSQL queue, "
                         "one node and two nodes")
    ap.add_argument("--repeat", type=int, default=1,
                    help="rounds of every run, interleaved; cells show the median and the spread (default 1)")
    ap.add_argument("--scaling-sizes", help="queued messages for queue scaling (100,100000,1000000; "
                    "100,10000,100000 with --quick)")
    ap.add_argument("--scaling-body", type=int, default=4096, help="body size of the pre-filled messages")
    ap.add_argument("--no-relay", action="store_true", help="skip the relay runs")
    ap.add_argument("--no-scaling", action="store_true", help="skip queue scaling")
    ap.add_argument("--profile", action="store_true",
                    help="one extra run (20 × 4 KB) of --profile-system under py-spy; results in bench/results/")
    ap.add_argument("--profile-system", default="mailpipe", choices=tuple(MAILPIPE_SYSTEMS),
                    help="the system --profile records, every node of it (default mailpipe)")
    ap.add_argument("--workers", default="auto",
                    help="workers of each mailpipe node: auto (one per core, pipeline serve's default) or N")
    ap.add_argument("--new-connection-per-message", action="store_true",
                    help="smtp-source without -d: one connection per message instead of one per session")
    ap.add_argument("--timeout", type=float, help="bound for each phase of a run, seconds "
                    "(default max(120, messages/10))")
    ap.add_argument("--note", action="append", default=[], help="a line to add to RESULTS.md (repeatable)")
    ap.add_argument("--output", type=Path, default=BENCH_DIR / "RESULTS.md")
    ap.add_argument("--section", metavar="TITLE",
                    help="write the report as the section '## TITLE' of --output (replacing a section of that "
                         "title, else appended), keeping the rest of the file")
    ap.add_argument("--keep", action="store_true", help="keep the temporary work directory (logs, queues)")
    args = ap.parse_args()
    args.messages = args.messages or (1000 if args.quick else 5000)
    args.scaling_sizes = _ints(args.scaling_sizes or ("100,10000,100000" if args.quick else "100,100000,1000000"))
    args.session_list = _ints(args.sessions)
    args.size_list = _ints(args.sizes)
    args.system_list = [s.strip() for s in args.systems.split(",") if s.strip()]
    if args.postgres:
        args.system_list += [s for s in POSTGRES_SETUPS if s not in args.system_list]
    for s in args.system_list:
        if s not in SYSTEMS:
            ap.error(f"unknown system {s!r}; choose from {', '.join(SYSTEMS)}")
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    args.phase_timeout = args.timeout or max(120.0, args.messages / 10)
    return args


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
                 load_before=loadavg(), notes=list(args.note), workers=args.workers)
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
                overall = progress.add_task("relay runs",
                                            total=len(scenarios) * len(args.system_list) * args.repeat)
                for round_ in range(1, args.repeat + 1):
                    for sessions, size in scenarios:
                        for system in args.system_list:
                            rep.runs.append(bench.run_one(system, sessions, size, round_=round_))
                            progress.advance(overall)
                if args.profile:
                    prof = bench.run_one(args.profile_system, 20, 4096, profile=True)
                    rep.notes.append(f"The profiled run of {args.profile_system} (py-spy, not in the table) went at "
                                     f"intake {(prof.intake_rate or 0):,.0f}/s, end-to-end "
                                     f"{(prof.e2e_rate or 0):,.0f}/s.")
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
    write_markdown(rep, args.output, args.section)
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
