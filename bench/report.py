"""What a bench invocation measured (:class:`Run`, :class:`Report`) and its tables, printed with rich.

bench/markdown.py writes the same tables to bench/RESULTS.md with the machine's description.

With ``--repeat N`` every cell is the median of the N rounds followed by the spread
(lowest–highest); ratios are ratios of medians.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

from rich.console import Console
from rich.table import Table

TARGETS: dict[tuple[int, int], dict[str, float]] = {
    (20, 4096): {"intake": 2.0, "e2e": 1.5},
    (20, 102400): {"e2e": 1.0},
    (1, 4096): {"e2e": 1.0},
}
"""The ratios to Postfix issue 13 asks for, by (sessions, size): ✓ in the table when met."""
TARGET_RSS_MB = 150
"""Peak RSS of every mailpipe process together, per worker."""


def targets_text() -> str:
    """The targets in words, under the relay table."""
    def one(sessions: int, size: int, ratios: dict[str, float]) -> str:
        parts = [f"{'intake' if k == 'intake' else 'end-to-end'} ≥ {v}×" for k, v in ratios.items()]
        return f"{sessions} × {size_text(size)}: " + ", ".join(parts)

    return ("Targets (ratio to Postfix, issue 13): " + "; ".join(one(s, z, r) for (s, z), r in TARGETS.items())
            + f"; peak RSS of all mailpipe processes < {TARGET_RSS_MB} MB per worker.")

#: The mailpipe setups compared with each other in the "queue backends and nodes" table.
NODE_SETUPS = {"mailpipe": "1 node, sqlite queue", "postgres": "1 node, postgres queue",
               "postgres-2nodes": "2 nodes, postgres queue"}
POSTGRES_SETUPS = ("postgres", "postgres-2nodes")
#: How each system is named in the CPU table.
RUN_LABELS = {"sink": "sink ceiling", "postfix": "Postfix", **NODE_SETUPS}


@dataclass
class Run:
    """One measured run of ``messages`` messages through one system."""

    system: str  # "sink", "postfix", "mailpipe", "postgres", "postgres-2nodes"
    sessions: int
    size: int
    messages: int
    round: int = 1
    nodes: int = 0  # mailpipe nodes (0: not mailpipe)
    workers: int = 0  # worker processes of each mailpipe node (1: one process, no supervisor)
    intake_s: float | None = None
    e2e_s: float | None = None
    peak_rss_kib: int | None = None  # the largest over the nodes (each node: all its processes together)
    node_rss_kib: list[int] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds over the run, by process tree (bench/cpu.py)
    load1: float | None = None  # the 1-minute load average when the run ended
    sink_count: int | None = None  # messages the sink counted once the queue was empty (duplicates show here)
    postgres: dict[str, int] = field(default_factory=dict)  # commits and WAL during the run (pg_cluster.py)
    error: str | None = None

    @property
    def intake_rate(self) -> float | None:
        """Messages per second accepted (until the last smtp-source exited)."""
        return self.messages / self.intake_s if self.intake_s else None

    @property
    def e2e_rate(self) -> float | None:
        """Messages per second end to end (until the sink had counted them all)."""
        return self.messages / self.e2e_s if self.e2e_s else None

    def cores(self, name: str) -> float | None:
        """Cores busy on average for process tree ``name`` (CPU seconds ÷ the run's wall time)."""
        if not self.e2e_s or name not in self.cpu:
            return None
        return self.cpu[name] / self.e2e_s


@dataclass
class Report:
    """Everything one bench invocation measured, and what it ran on."""

    machine: dict[str, str]
    command: str
    messages: int
    reuse: bool
    runs: list[Run] = field(default_factory=list)
    scaling: list[dict] = field(default_factory=list)
    scaling_body: int = 4096
    load_before: str = "?"
    load_after: str = "?"
    profile_files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    workers: str = "auto"  # --workers

    def find_all(self, system: str, sessions: int, size: int) -> list[Run]:
        """Every round of one system in one scenario."""
        return [r for r in self.runs if (r.system, r.sessions, r.size) == (system, sessions, size)]

    def scenarios(self) -> list[tuple[int, int]]:
        """(sessions, size) in the order they ran."""
        seen: list[tuple[int, int]] = []
        for r in self.runs:
            if (r.sessions, r.size) not in seen:
                seen.append((r.sessions, r.size))
        return seen

    def systems(self) -> list[str]:
        """The systems that ran, in the order they ran."""
        return list(dict.fromkeys(r.system for r in self.runs))

    def rounds(self) -> int:
        """How many rounds ran (``--repeat``)."""
        return max((r.round for r in self.runs), default=0)


def size_text(n: int) -> str:
    """A message size as the tables show it: "4 KB", or "500 B"."""
    return f"{n // 1024} KB" if n % 1024 == 0 else f"{n} B"


def _rate(v: float | None) -> str:
    return "—" if v is None else f"{v:,.0f}"


def _ratio(a: float | None, b: float | None) -> str:
    return "—" if not a or not b else f"{a / b:.2f}×"


def _mb(kib: float | None) -> str:
    return "—" if kib is None else f"{kib / 1024:.0f} MB"


def _median(runs: list[Run], value: Callable[[Run], float | None]) -> float | None:
    got = [v for v in map(value, runs) if v is not None]
    return statistics.median(got) if got else None


def _spread(runs: list[Run], value: Callable[[Run], float | None], fmt: Callable[[float | None], str] = _rate) -> str:
    """The median over the rounds and, with several, the lowest–highest; "failed" when none finished."""
    if not runs:
        return "—"
    got = [v for v in map(value, runs) if v is not None]
    failed = sum(1 for r in runs if r.error)
    if not got:
        return "failed" if failed else "—"
    text = fmt(statistics.median(got))
    if len(got) > 1 and fmt(min(got)) != fmt(max(got)):
        text += f" ({fmt(min(got))}–{fmt(max(got))})"
    if failed:
        text += f" ({failed} failed)"
    return text


def _intake(r: Run) -> float | None:
    return r.intake_rate


def _e2e(r: Run) -> float | None:
    return r.e2e_rate


RELAY_HEADERS = ["sessions × size", "sink ceiling msg/s", "Postfix intake", "Postfix end-to-end",
                 "mailpipe intake", "mailpipe end-to-end", "intake ratio", "end-to-end ratio",
                 "mailpipe peak RSS, all processes (per worker)"]


def _marked(ratio: str, got: float | None, base: float | None, target: float | None) -> str:
    """``ratio`` with ✓ when it meets ``target``, else the target in brackets (no target: as it is)."""
    if target is None or not got or not base:
        return ratio
    return ratio + (" ✓" if got / base >= target else f" (target {target}×)")


def _rss(runs: list[Run]) -> str:
    """The peak RSS of all processes of the node (median), and per worker."""
    total = _median(runs, lambda r: r.peak_rss_kib)
    workers = max((r.workers for r in runs), default=0)
    if total is None:
        return _spread(runs, lambda r: r.peak_rss_kib, _mb)
    text = _spread(runs, lambda r: r.peak_rss_kib, _mb)
    if workers > 1:
        per = total / workers
        text += f" ({_mb(per)}" + (" ✓" if per / 1024 < TARGET_RSS_MB else f", target < {TARGET_RSS_MB} MB") + ")"
    return text


def relay_rows(rep: Report) -> list[list[str]]:
    """mailpipe (sqlite) against Postfix: one row per scenario."""
    rows = []
    for sessions, size in rep.scenarios():
        sink, pf, mp = (rep.find_all(s, sessions, size) for s in ("sink", "postfix", "mailpipe"))
        if not (sink or pf or mp):
            continue
        mp_in, pf_in = _median(mp, _intake), _median(pf, _intake)
        mp_e2e, pf_e2e = _median(mp, _e2e), _median(pf, _e2e)
        target = TARGETS.get((sessions, size), {})
        ir = _marked(_ratio(mp_in, pf_in), mp_in, pf_in, target.get("intake"))
        er = _marked(_ratio(mp_e2e, pf_e2e), mp_e2e, pf_e2e, target.get("e2e"))
        rows.append([f"{sessions} × {size_text(size)}", _spread(sink, _e2e), _spread(pf, _intake), _spread(pf, _e2e),
                     _spread(mp, _intake), _spread(mp, _e2e), ir, er, _rss(mp)])
    return rows


NODE_HEADERS = ["sessions × size", "mailpipe", "intake msg/s", "end-to-end msg/s", "intake ÷ sqlite node",
                "end-to-end ÷ sqlite node", "peak RSS per node", "CPU ms per message: nodes / postgres",
                "commits / WAL fsyncs / WAL KB per message"]


def _cpu_per_message(runs: list[Run]) -> str:
    """CPU milliseconds per message of all nodes together and of PostgreSQL (medians)."""
    def ms(run: Run, names: list[str]) -> float | None:
        return 1000 * sum(run.cpu.get(n, 0.0) for n in names) / run.messages if run.cpu else None

    nodes = _median(runs, lambda r: ms(r, [f"node{i + 1}" for i in range(r.nodes)]))
    postgres = _median(runs, lambda r: ms(r, ["postgres"]) if r.system in POSTGRES_SETUPS else None)
    if nodes is None:
        return "—"
    return f"{nodes:.1f} / " + ("—" if postgres is None else f"{postgres:.1f}")


def _per_message(runs: list[Run]) -> str:
    """PostgreSQL's commits, WAL fsyncs and WAL kilobytes per message (medians), or — without postgres."""
    figures = [_median(runs, lambda r, k=key: r.postgres[k] / r.messages if r.postgres else None)
               for key in ("commits", "wal_syncs", "wal_bytes")]
    if figures[0] is None:
        return "—"
    commits, syncs, wal = figures
    return f"{commits:.1f} / {syncs:.2f} / {wal / 1024:.1f}"


def node_rows(rep: Report) -> list[list[str]]:
    """One node on sqlite, one node and two nodes on one postgres queue: a row each per scenario."""
    rows = []
    for sessions, size in rep.scenarios():
        base = rep.find_all("mailpipe", sessions, size)
        for system, label in NODE_SETUPS.items():
            runs = rep.find_all(system, sessions, size)
            if not runs:
                continue
            rows.append([f"{sessions} × {size_text(size)}", label, _spread(runs, _intake), _spread(runs, _e2e),
                         _ratio(_median(runs, _intake), _median(base, _intake)),
                         _ratio(_median(runs, _e2e), _median(base, _e2e)),
                         _spread(runs, lambda r: max(r.node_rss_kib, default=None), _mb), _cpu_per_message(runs),
                         _per_message(runs)])
    return rows


CPU_HEADERS = ["sessions × size", "run", "relay (each node)", "postgres", "smtp-source", "smtp-sink", "bench",
               "other jobs", "machine busy", "1-min load"]


def cpu_rows(rep: Report) -> list[list[str]]:
    """Cores busy on average during each system's runs (median over the rounds), by process tree."""
    rows = []

    def cores(runs: list[Run], name: str) -> str:
        v = _median(runs, lambda r: r.cores(name))
        return "—" if v is None else f"{v:.2f}"

    for sessions, size in rep.scenarios():
        for system in rep.systems():
            runs = [r for r in rep.find_all(system, sessions, size) if r.cpu and not r.error]
            if not runs:
                continue
            nodes = max(r.nodes for r in runs)
            relay = (" + ".join(cores(runs, f"node{i + 1}") for i in range(nodes)) if nodes
                     else cores(runs, "relay") if system == "postfix" else "—")
            rows.append([f"{sessions} × {size_text(size)}", RUN_LABELS.get(system, system), relay,
                         cores(runs, "postgres"), cores(runs, "smtp-source"), cores(runs, "smtp-sink"),
                         cores(runs, "bench"), cores(runs, "other"), cores(runs, "machine"),
                         _spread(runs, lambda r: r.load1, lambda v: "—" if v is None else f"{v:.2f}")])
    return rows


SCALING_HEADERS = ["already queued", "store() one at a time (median / p95)", "store() 20 in flight",
                   "claim_due(20) (median / max)", "claim_due, nothing due", "next_due()", "peak RSS", "queue file"]


def scaling_rows(rep: Report) -> list[list[str]]:
    """The queue scaling figures: one row per queue size."""
    rows = []
    for s in rep.scaling:
        claim = s.get("claim") or {}
        rows.append([
            f"{s['queued']:,}",
            f"{s['store_seq']['median_ms']:.2f} / {s['store_seq']['p95_ms']:.2f} ms",
            f"{s['store_concurrent_per_s']:,.0f} msg/s",
            f"{claim.get('median_ms', 0):.2f} / {claim.get('max_ms', 0):.2f} ms"
            + ("" if s["claimed"] == s["claim_expected"] else f" (claimed {s['claimed']}/{s['claim_expected']}!)"),
            f"{s['claim_empty_ms']:.2f} ms",
            f"{s['next_due']['median_ms']:.2f} ms",
            f"{s['peak_rss_kib'] / 1024:.0f} MB",
            f"{s['db_bytes'] / 1024 / 1024:,.0f} MB",
        ])
    return rows


def _tables(rep: Report) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, headers, rows) of every table this report has."""
    out = []
    relay = relay_rows(rep)
    if relay:
        out.append((f"Relay on loopback: {rep.messages:,} messages per run, smtp-source → relay → smtp-sink "
                    "(msg/s; ratio = mailpipe / Postfix)", RELAY_HEADERS, relay))
    nodes = node_rows(rep)
    if any(r.system in POSTGRES_SETUPS for r in rep.runs):
        out.append(("mailpipe: one node on sqlite, one and two nodes on one postgres queue (msg/s)",
                    NODE_HEADERS, nodes))
    cpu = cpu_rows(rep)
    if cpu:
        out.append(("Cores busy on average during the runs (CPU seconds ÷ wall time)", CPU_HEADERS, cpu))
    if rep.scaling:
        out.append((f"Queue scaling (SqliteQueue, {size_text(rep.scaling_body)} bodies)", SCALING_HEADERS,
                    scaling_rows(rep)))
    return out


def print_report(rep: Report, console: Console) -> None:
    """The tables, on the terminal."""
    for title, headers, rows in _tables(rep):
        t = Table(title=title)
        for h in headers:
            t.add_column(h, justify="left" if h in ("sessions × size", "mailpipe", "run") else "right")
        for row in rows:
            t.add_row(*row)
        console.print(t)
    for r in rep.runs:
        if r.error:
            console.print(f"[red]{r.system} {r.sessions} × {size_text(r.size)} (round {r.round}): {r.error}[/red]")
    console.print(f"load average before {rep.load_before}, after {rep.load_after}")
