"""The results table: printed with rich, and written to bench/RESULTS.md with the machine's description."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

TARGET_INTAKE = 1.5
TARGET_E2E = 1.0
TARGET_RSS_MB = 150


@dataclass
class Run:
    """One measured run of ``messages`` messages through one system."""

    system: str  # "sink", "postfix", "mailpipe"
    sessions: int
    size: int
    messages: int
    intake_s: float | None = None
    e2e_s: float | None = None
    peak_rss_kib: int | None = None
    error: str | None = None

    @property
    def intake_rate(self) -> float | None:
        return self.messages / self.intake_s if self.intake_s else None

    @property
    def e2e_rate(self) -> float | None:
        return self.messages / self.e2e_s if self.e2e_s else None


@dataclass
class Report:
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

    def find(self, system: str, sessions: int, size: int) -> Run | None:
        for r in self.runs:
            if (r.system, r.sessions, r.size) == (system, sessions, size):
                return r
        return None

    def scenarios(self) -> list[tuple[int, int]]:
        seen: list[tuple[int, int]] = []
        for r in self.runs:
            if (r.sessions, r.size) not in seen:
                seen.append((r.sessions, r.size))
        return seen


def _size(n: int) -> str:
    return f"{n // 1024} KB" if n % 1024 == 0 else f"{n} B"


def _rate(v: float | None) -> str:
    return "—" if v is None else f"{v:,.0f}"


def _ratio(a: float | None, b: float | None) -> str:
    return "—" if not a or not b else f"{a / b:.2f}×"


def _mb(kib: int | None) -> str:
    return "—" if kib is None else f"{kib / 1024:.0f} MB"


RELAY_HEADERS = ["sessions × size", "sink ceiling msg/s", "Postfix intake", "Postfix end-to-end",
                 "mailpipe intake", "mailpipe end-to-end", "intake ratio", "end-to-end ratio", "mailpipe peak RSS"]


def relay_rows(rep: Report) -> list[list[str]]:
    rows = []
    for sessions, size in rep.scenarios():
        sink, pf, mp = (rep.find(s, sessions, size) for s in ("sink", "postfix", "mailpipe"))

        def rate(r: Run | None, kind: str) -> str:
            if r is None:
                return "—"
            if r.error and getattr(r, kind) is None:
                return "failed"
            return _rate(getattr(r, kind))

        target = sessions == 20 and size == 4096
        ir = _ratio(mp and mp.intake_rate, pf and pf.intake_rate)
        er = _ratio(mp and mp.e2e_rate, pf and pf.e2e_rate)
        if target and ir != "—":
            ir += " ✓" if mp.intake_rate / pf.intake_rate >= TARGET_INTAKE else f" (target {TARGET_INTAKE}×)"
        if target and er != "—":
            er += " ✓" if mp.e2e_rate / pf.e2e_rate >= TARGET_E2E else f" (target {TARGET_E2E}×)"
        rows.append([f"{sessions} × {_size(size)}", rate(sink, "e2e_rate"), rate(pf, "intake_rate"),
                     rate(pf, "e2e_rate"), rate(mp, "intake_rate"), rate(mp, "e2e_rate"), ir, er,
                     _mb(mp.peak_rss_kib if mp else None)])
    return rows


SCALING_HEADERS = ["already queued", "store() one at a time (median / p95)", "store() 20 in flight",
                   "claim_due(20) (median / max)", "claim_due, nothing due", "next_due()", "peak RSS", "queue file"]


def scaling_rows(rep: Report) -> list[list[str]]:
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


def print_report(rep: Report, console: Console) -> None:
    if rep.runs:
        t = Table(title=f"Relay on loopback: {rep.messages:,} messages per run, smtp-source → relay → smtp-sink "
                        "(msg/s; ratio = mailpipe / Postfix)")
        for h in RELAY_HEADERS:
            t.add_column(h, justify="right" if h != "sessions × size" else "left")
        for row in relay_rows(rep):
            t.add_row(*row)
        console.print(t)
        for r in rep.runs:
            if r.error:
                console.print(f"[red]{r.system} {r.sessions} × {_size(r.size)}: {r.error}[/red]")
    if rep.scaling:
        t = Table(title=f"Queue scaling (SqliteQueue, {_size(rep.scaling_body)} bodies)")
        for h in SCALING_HEADERS:
            t.add_column(h, justify="right")
        for row in scaling_rows(rep):
            t.add_row(*row)
        console.print(t)
    console.print(f"load average before {rep.load_before}, after {rep.load_after}")


def _md_table(headers: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out) + "\n"


def write_markdown(rep: Report, path: Path) -> None:
    m = rep.machine
    parts = [
        "# Benchmark results\n",
        f"Written by `python -m bench.run` on {m['date']}. Command: `{rep.command}`. "
        "See bench/README.md for what each figure means.\n",
        "## Machine\n",
        "\n".join(f"- {k}: {v}" for k, v in m.items() if k != "date") + "\n",
        f"- load average (1, 5, 15 min): {rep.load_before} before, {rep.load_after} after\n",
    ]
    if rep.notes:
        parts.append("\n".join(f"> {n}" for n in rep.notes) + "\n")
    if rep.runs:
        conn = "keeps its connection (`smtp-source -d`)" if rep.reuse else "opens a connection per message"
        parts += [
            "## Relay: mailpipe and Postfix side by side\n",
            f"{rep.messages:,} messages per run, `smtp-source` → relay → `smtp-sink`, all on loopback; "
            f"each session {conn}. "
            "Rates in messages/s: *intake* = messages ÷ time until smtp-source has its last 250 and exits; "
            "*end-to-end* = messages ÷ time until the sink has counted them all; *sink ceiling* = smtp-source "
            "straight into smtp-sink. Ratios are mailpipe ÷ Postfix. A fresh relay, queue and sink for every run.\n",
            _md_table(RELAY_HEADERS, relay_rows(rep)),
            f"Targets (20 × 4 KB): intake ratio ≥ {TARGET_INTAKE}×, end-to-end ratio ≥ {TARGET_E2E}×, "
            f"mailpipe peak RSS < {TARGET_RSS_MB} MB.\n",
        ]
        errors = [f"- {r.system} {r.sessions} × {_size(r.size)}: {r.error}" for r in rep.runs if r.error]
        if errors:
            parts.append("Failures:\n\n" + "\n".join(errors) + "\n")
    if rep.scaling:
        parts += [
            "## Queue scaling\n",
            f"`SqliteQueue` opened on a file already holding N deferred messages ({_size(rep.scaling_body)} body "
            "each, due in 1 h to 2 days), in a fresh process. `store()` of new messages one at a time (each with "
            "its own commit and fsync) and 20 in flight (group commit); `claim_due()` (limit 20) until every new "
            "message is claimed; `next_due()`; the process's peak RSS. Flat rows mean the due lookup never scans "
            "the queue and bodies are not held in memory.\n",
            _md_table(SCALING_HEADERS, scaling_rows(rep)),
        ]
    if rep.profile_files:
        parts += ["## Profile\n", "py-spy recordings (git-ignored): " + ", ".join(
            f"`{p}`" for p in rep.profile_files) + ".\n"]
    path.write_text("\n".join(parts))
