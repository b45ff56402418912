"""bench/RESULTS.md: the report as Markdown, the whole file or one section of it."""

from __future__ import annotations

from pathlib import Path

from .report import (
    CPU_HEADERS,
    NODE_HEADERS,
    POSTGRES_SETUPS,
    RELAY_HEADERS,
    SCALING_HEADERS,
    Report,
    cpu_rows,
    node_rows,
    relay_rows,
    scaling_rows,
    size_text,
    targets_text,
)


def _md_table(headers: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out) + "\n"


def render_markdown(rep: Report, title: str = "Benchmark results", level: int = 1) -> str:
    """The report as Markdown under a heading ``title`` of ``level`` (its parts one level below)."""
    m = rep.machine
    h = "#" * (level + 1)
    rounds = rep.rounds()
    parts = [
        f"{'#' * level} {title}\n",
        f"Written by `python -m bench.run` on {m['date']}. Command: `{rep.command}`. "
        "See bench/README.md for what each figure means.\n",
        f"{h} Machine\n",
        "\n".join(f"- {k}: {v}" for k, v in m.items() if k != "date") + "\n",
        f"- load average (1, 5, 15 min): {rep.load_before} before, {rep.load_after} after\n",
    ]
    if rep.notes:
        parts.append("\n".join(f"> {n}" for n in rep.notes) + "\n")
    if rounds > 1:
        parts.append(f"Every system ran {rounds} times, the rounds interleaved (each round runs every system "
                     "once); a cell is the median, with the lowest–highest in brackets.\n")
    if rep.runs:
        conn = "keeps its connection (`smtp-source -d`)" if rep.reuse else "opens a connection per message"
        relay = relay_rows(rep)
        if relay:
            parts += [
                f"{h} Relay: mailpipe and Postfix side by side\n",
                f"{rep.messages:,} messages per run, `smtp-source` → relay → `smtp-sink`, all on loopback; "
                f"each session {conn}; mailpipe with `workers: {rep.workers}`. Rates in messages/s: *intake* = "
                "messages ÷ time until smtp-source has its "
                "last 250 and exits; *end-to-end* = messages ÷ time until the sink has counted them all; *sink "
                "ceiling* = smtp-source straight into smtp-sink. Ratios are mailpipe ÷ Postfix. A fresh relay, "
                "queue and sink for every run.\n",
                _md_table(RELAY_HEADERS, relay),
                targets_text() + "\n",
            ]
        if any(r.system in POSTGRES_SETUPS for r in rep.runs):
            parts += [
                f"{h} mailpipe on one PostgreSQL queue: one node and two nodes\n",
                "The same relay (`delivery.concurrency: 20` per node) on the sqlite queue, on a postgres queue "
                "(a private PostgreSQL 15 on this machine, `fsync` and `synchronous_commit` on, a fresh database "
                "per run, `pool_size: 10`), and as two nodes on one postgres queue: two `pipeline serve` processes "
                "listening on 127.0.0.1 and 127.0.0.2, the sessions split between them (two smtp-source "
                "processes, each with its share of sessions and messages), both delivering to the one smtp-sink. "
                "Intake ends when the last smtp-source exits; end to end when the sink has counted every message. "
                "Ratios are to the sqlite node of the same run.\n",
                _md_table(NODE_HEADERS, node_rows(rep)),
            ]
        cpu = cpu_rows(rep)
        if cpu:
            parts += [
                f"{h} Where the CPU went\n",
                "Cores busy on average over each run (CPU seconds ÷ the run's end-to-end time, median over the "
                "rounds; bench/cpu.py): *relay* is Postfix's `master` and its children, or each `pipeline serve` "
                "node; *postgres* the postmaster and its backends; *bench* the harness's own polling; *machine "
                "busy* all CPUs together (the machine has "
                f"{m.get('cores', '?')}); *other jobs* what none of the named processes used (other work on "
                "the machine, and kernel time spent outside any process, e.g. loopback softirqs).\n",
                _md_table(CPU_HEADERS, cpu),
            ]
        errors = [f"- {r.system} {r.sessions} × {size_text(r.size)} (round {r.round}): {r.error}"
                  for r in rep.runs if r.error]
        if errors:
            parts.append("Failures:\n\n" + "\n".join(errors) + "\n")
    if rep.scaling:
        parts += [
            f"{h} Queue scaling\n",
            f"`SqliteQueue` opened on a file already holding N deferred messages ({size_text(rep.scaling_body)} body "
            "each, due in 1 h to 2 days), in a fresh process. `store()` of new messages one at a time (each with "
            "its own commit and fsync) and 20 in flight (group commit); `claim_due()` (limit 20) until every new "
            "message is claimed; `next_due()`; the process's peak RSS. Flat rows mean the due lookup never scans "
            "the queue and bodies are not held in memory.\n",
            _md_table(SCALING_HEADERS, scaling_rows(rep)),
        ]
    if rep.profile_files:
        parts += [f"{h} Profile\n", "py-spy recordings (git-ignored): " + ", ".join(
            f"`{p}`" for p in rep.profile_files) + ".\n"]
    return "\n".join(parts)


def write_markdown(rep: Report, path: Path, section: str | None = None) -> None:
    """Write the report to ``path``: the whole file, or (``section``) one ``## section`` of it.

    A section replaces the part of the file from its ``## section`` heading to the next
    ``## `` heading (or the end), or is appended when the file has none; the rest of the
    file is kept as it is.
    """
    if section is None:
        path.write_text(render_markdown(rep))
        return
    text = render_markdown(rep, section, level=2)
    old = path.read_text() if path.exists() else "# Benchmark results\n"
    lines = old.splitlines(keepends=True)
    heading = f"## {section}"
    start = next((i for i, line in enumerate(lines) if line.rstrip("\n") == heading), None)
    if start is None:
        path.write_text(old.rstrip("\n") + "\n\n" + text)
        return
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    rest = "".join(lines[end:])
    path.write_text("".join(lines[:start]) + text + ("\n" + rest if rest else ""))
