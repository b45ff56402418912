"""Where a message body goes: a blob in the SQLite queue, or a file of its own (issue 13).

mailpipe keeps each body as a blob in its SQLite queue file (WAL, ``synchronous=FULL``): the body is
written to the WAL and made durable by the commit's one fsync, and written a second time into the
database file when the WAL is checkpointed. Postfix writes each message to a queue file of its own,
once, and fsyncs it. This measures, on the machine it runs on, what making a message durable costs
each way, with the queue's own code for the index:

* **blob** (what mailpipe does): ``delivery.insert`` (message row, body blob, recipient rows) in one
  transaction, committed with fsync; checkpoints come as SQLite schedules them (every 1,000 WAL
  pages), so their cost is in the figures;
* **file + folder fsync**: the body written to a new file in a spool folder and fsynced, the folder
  fsynced (so the file's name survives a power cut too), then the same insert with an empty body
  (the index) committed with fsync;
* **file, Postfix's way**: as above without the folder's fsync (Postfix relies on the file system
  to order the name before the data it fsyncs).

Each store runs **one at a time** (what a single client waits for before its ``250``) and **20 to a
commit** (what the queue's group commit does under 20 sessions: one transaction, one fsync; the
file ways still need one fsync per file). Reported per message: the median and mean time and the
bytes the process wrote to the disk (``/proc/self/io`` ``write_bytes``: WAL, checkpoints and files
alike). Rounds are interleaved; each way gets a fresh folder and queue file per round.

Run ``python -m bench.body_store`` from the repository root (about a minute); it writes
bench/RESULTS-body-store.md and prints it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mailpipe.core.message import Message, Recipient
from mailpipe.plugins.sqlite_queue import delivery
from mailpipe.plugins.sqlite_queue.connection import connect

from .common import BENCH_DIR
from .machine import loadavg

SIZES = {"4 KB": 4 * 1024, "100 KB": 100 * 1024, "1 MB": 1024 * 1024}
WAYS = ("blob", "file + folder fsync", "file, Postfix's way")


@dataclass
class Figures:
    """One way, one size, one batching: seconds per message (each, or each batch's share) and bytes written."""

    seconds: list[float]
    written: int
    messages: int

    @property
    def median_ms(self) -> float:
        return statistics.median(self.seconds) * 1000

    @property
    def mean_ms(self) -> float:
        return statistics.fmean(self.seconds) * 1000

    @property
    def kb_written(self) -> float:
        return self.written / self.messages / 1024


def written_bytes() -> int:
    """What this process has written to storage so far (``/proc/self/io``)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    raise RuntimeError("/proc/self/io has no write_bytes")


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file(path: Path, data: bytes) -> None:
    """A new file with ``data``, fsynced before it is closed."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def message(n: int, size: int) -> Message:
    return Message(id=f"B{n:012d}", sender="bench@source.bench.test", created=time.time(), size=size,
                   recipients=[Recipient(address="bench@sink.bench.test")])


def commit(conn: sqlite3.Connection, rows: list[tuple[Message, bytes]]) -> None:
    conn.execute("BEGIN IMMEDIATE")
    for msg, data in rows:
        delivery.insert(conn, msg, data)
    conn.execute("COMMIT")


def run_way(way: str, workdir: Path, size: int, messages: int, batch: int) -> Figures:
    """Store ``messages`` bodies of ``size`` bytes ``batch`` to a commit; figures per message."""
    spool = workdir / "spool"
    spool.mkdir()
    conn = connect(workdir / "queue.sqlite3", 5.0)
    body = (b"x" * 76 + b"\r\n") * (size // 78) + b"x" * (size % 78)
    seconds: list[float] = []
    store: Callable[[list[tuple[Message, bytes]]], None]
    if way == "blob":
        def store(rows: list[tuple[Message, bytes]]) -> None:
            commit(conn, rows)
    else:
        sync_folder = way == "file + folder fsync"

        def store(rows: list[tuple[Message, bytes]]) -> None:
            for msg, data in rows:
                write_file(spool / msg.id, data)
            if sync_folder:
                fsync_path(spool)
            commit(conn, [(msg, b"") for msg, _ in rows])
    try:
        store([(message(-1, size), body)])  # warm: the schema pages, the folder
        before = written_bytes()
        for start in range(0, messages, batch):
            rows = [(message(n, size), body) for n in range(start, min(start + batch, messages))]
            began = time.perf_counter()
            store(rows)
            seconds.append((time.perf_counter() - began) / len(rows))
        return Figures(seconds, written_bytes() - before, messages)
    finally:
        conn.close()


def measure(sizes: list[str], messages: dict[str, int], rounds: int, base: Path) -> dict[tuple[str, str, int], Figures]:
    """Every way × size × batching, ``rounds`` interleaved rounds; the figures of all rounds together."""
    found: dict[tuple[str, str, int], Figures] = {}
    for _ in range(rounds):
        for size_name in sizes:
            for batch in (1, 20):
                for way in WAYS:
                    workdir = Path(tempfile.mkdtemp(prefix="body-store-", dir=base))
                    try:
                        got = run_way(way, workdir, SIZES[size_name], messages[size_name], batch)
                    finally:
                        shutil.rmtree(workdir, ignore_errors=True)
                    key = (size_name, way, batch)
                    if key in found:
                        had = found[key]
                        found[key] = Figures(had.seconds + got.seconds, had.written + got.written,
                                             had.messages + got.messages)
                    else:
                        found[key] = got
    return found


def table(found: dict[tuple[str, str, int], Figures]) -> str:
    """The Markdown table of the figures."""
    lines = ["| size | stored | way | ms per message, median | mean | KB written per message |",
             "|---|---|---|---|---|---|"]
    for (size_name, way, batch), f in found.items():
        stored = "one at a time" if batch == 1 else f"{batch} to a commit"
        lines.append(f"| {size_name} | {stored} | {way} | {f.median_ms:.2f} | {f.mean_ms:.2f} | {f.kb_written:,.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(SIZES), help="comma-separated: " + ", ".join(SIZES))
    parser.add_argument("--messages", type=int, default=600, help="messages per run (a fifth of it for 1 MB)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()),
                        help="where the spool folders and queue files go (the disk measured)")
    parser.add_argument("--output", type=Path, default=BENCH_DIR / "RESULTS-body-store.md")
    args = parser.parse_args(argv)
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        parser.error(f"unknown size {unknown[0]!r}; one of {', '.join(SIZES)}")
    messages = {s: args.messages if SIZES[s] < 1024 * 1024 else max(20, args.messages // 5) for s in sizes}
    load_before = loadavg()
    found = measure(sizes, messages, args.rounds, args.dir)
    text = "\n".join([
        "# Where a body goes: SQLite blob or a file of its own", "",
        f"Written by `python -m bench.body_store` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
        f"{args.rounds} interleaved rounds of {', '.join(f'{messages[s]} × {s}' for s in sizes)} per way; "
        f"{os.cpu_count()} cores; load average {load_before} before, {loadavg()} after; "
        f"files and queue in {args.dir}. See the script's docstring for what is measured.", "",
        table(found), ""])
    args.output.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
