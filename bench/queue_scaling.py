"""Queue scaling: does enqueueing and finding due work stay flat as the queue grows?

For each size N (e.g. 100, 100,000, 1,000,000) the queue file is filled with N
deferred messages (each with a body, one recipient due 1 h to 2 days from now)
by raw ``executemany`` inserts into the schema that :class:`SqliteQueue`
creates, in big transactions. One file grows from size to size. Then a fresh
process (so its memory says only what the queue costs) opens the file with
:class:`~mailpipe.plugins.sqlite_queue.SqliteQueue` and times, through its
public API:

* ``store()`` one message at a time (each awaits its own commit and fsync);
* ``store()`` of many messages at once, 20 in flight (group commit);
* ``claim_due()`` (limit 20) until all the new, due messages are claimed, and
  once more with nothing due;
* ``next_due()``;

and reports its peak RSS (VmHWM): bodies stay on disk, so it must not grow with N.

Run ``python -m bench.queue_scaling --sizes 100,100000`` from the repository root on its own, or through
``python -m bench.run``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from .common import REPO_DIR, BenchError
from .machine import proc_status

CHUNK = 50_000
OWNER = "bench:0:scaling"


# -- filling ------------------------------------------------------------------------------------


def create(path: Path) -> None:
    """Create the schema by opening the queue once, the way mailpipe does."""
    from mailpipe.plugins.sqlite_queue import SqliteQueue

    async def go() -> None:
        q = SqliteQueue(path)
        await q.open()
        await q.close()

    asyncio.run(go())


def queued(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT count(*) FROM messages WHERE done_at IS NULL").fetchone()[0]


def prefill(path: Path, target: int, body_size: int, progress: Callable[[int], None] | None = None) -> int:
    """Add deferred messages until ``target`` are queued; return how many were added."""
    if not path.exists():
        create(path)
    have = queued(path)
    need = max(0, target - have)
    if not need:
        return 0
    now = time.time()
    body = (b"Subject: bench\r\n\r\n" + b"x" * 76 + b"\r\n") * max(1, body_size // 96)
    body = body[:body_size]
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")  # filling only; measurements use mailpipe's own settings
    conn.execute("PRAGMA cache_size = -200000")
    client = json.dumps({"peer": "127.0.0.1", "helo": "bench", "tls": False, "auth_user": None,
                         "may_relay": True, "smtputf8": False, "listener": "bench"})
    start = conn.execute("SELECT count(*) FROM messages").fetchone()[0]
    done = 0
    try:
        while done < need:
            n = min(CHUNK, need - done)
            first = start + done
            ids = [f"PREFILL{first + i:010d}" for i in range(n)]
            created = [now - 3600 - (first + i) % 86400 for i in range(n)]
            due = [now + 3600 + ((first + i) * 7919) % 172800 for i in range(n)]
            conn.execute("BEGIN")
            conn.executemany(
                "INSERT INTO messages (id, sender, created, size, client, mail_options, attributes) "
                "VALUES (?, 'sender@bench.test', ?, ?, ?, '[]', '{}')",
                ((mid, c, len(body), client) for mid, c in zip(ids, created, strict=True)))
            conn.executemany("INSERT INTO bodies (message_id, data) VALUES (?, ?)", ((mid, body) for mid in ids))
            conn.executemany(
                "INSERT INTO recipients (message_id, address, state, attempts, next_attempt, last_reply, updated) "
                "VALUES (?, ?, 'deferred', 1, ?, '451 4.3.0 try later', ?)",
                ((mid, f"rcpt{first + i}@dest{(first + i) % 997}.test", d, c)
                 for i, (mid, d, c) in enumerate(zip(ids, due, created, strict=True))))
            conn.execute("COMMIT")
            done += n
            if progress:
                progress(done)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return need


# -- measuring (in a fresh process) ------------------------------------------------------------


def _ms(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    return {"median_ms": statistics.median(values) * 1000, "p95_ms": values[int(len(values) * 0.95) - 1] * 1000
            if len(values) >= 20 else values[-1] * 1000, "max_ms": values[-1] * 1000}


async def measure(path: Path, sequential: int, concurrent: int, body_size: int) -> dict:
    from mailpipe.core.ids import new_queue_id
    from mailpipe.core.message import Message, Recipient, SessionInfo
    from mailpipe.plugins.sqlite_queue import SqliteQueue

    rss_start = proc_status().get("VmRSS", 0)
    n_queued = queued(path)
    body = (b"Received: from bench\r\nSubject: new\r\n\r\n" + b"y" * 76 + b"\r\n") * max(1, body_size // 110)
    session = SessionInfo(peer="127.0.0.1", helo="bench", may_relay=True, listener="127.0.0.1:0")

    def new_message() -> Message:
        now = time.time()
        return Message(id=new_queue_id(now), sender="new@bench.test",
                       recipients=[Recipient(address="rcpt@sink.bench.test")], created=now, session=session,
                       size=len(body))

    q = SqliteQueue(path)
    t0 = time.perf_counter()
    await q.open()
    open_s = time.perf_counter() - t0
    try:
        await q.store(new_message(), body)  # warm-up
        seq = []
        for _ in range(sequential):
            m = new_message()
            t = time.perf_counter()
            await q.store(m, body)
            seq.append(time.perf_counter() - t)

        sem = asyncio.Semaphore(20)

        async def one() -> None:
            async with sem:
                await q.store(new_message(), body)

        t = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(concurrent)))
        conc_s = time.perf_counter() - t

        claims, claimed = [], 0
        for _ in range(10_000):  # bounded: 1 + sequential + concurrent messages are due
            now = time.time()
            t = time.perf_counter()
            got = await q.claim_due(now, 20, OWNER, now + 600)
            claims.append(time.perf_counter() - t)
            if not got:
                claims.pop()
                break
            claimed += len(got)
        now = time.time()
        t = time.perf_counter()
        empty = await q.claim_due(now, 20, OWNER, now + 600)
        empty_s = time.perf_counter() - t
        nd = []
        for _ in range(20):
            t = time.perf_counter()
            await q.next_due()
            nd.append(time.perf_counter() - t)
    finally:
        await q.close()
    status = proc_status()
    return {
        "queued": n_queued,
        "open_s": open_s,
        "store_seq": _ms(seq),
        "store_concurrent_per_s": concurrent / conc_s,
        "claim": _ms(claims) if claims else {},
        "claim_calls": len(claims),
        "claimed": claimed,
        "claim_expected": 1 + sequential + concurrent,
        "claim_empty_ms": empty_s * 1000,
        "unexpected_empty": len(empty),
        "next_due": _ms(nd),
        "rss_start_kib": rss_start,
        "rss_end_kib": status.get("VmRSS", 0),
        "peak_rss_kib": status.get("VmHWM", 0),
        "db_bytes": sum(p.stat().st_size for p in path.parent.glob(path.name + "*")),
    }


def measure_in_subprocess(path: Path, *, sequential: int, concurrent: int, body_size: int,
                          timeout: float = 600) -> dict:
    cmd = [sys.executable, "-m", "bench.queue_scaling", "--measure", str(path), "--sequential", str(sequential),
           "--concurrent", str(concurrent), "--body-size", str(body_size)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, cwd=REPO_DIR)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"queue measurement took longer than {timeout:.0f}s") from exc
    if proc.returncode != 0:
        raise BenchError(f"queue measurement failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_scaling(workdir: Path, sizes: list[int], *, body_size: int = 4096, sequential: int = 100,
                concurrent: int = 400, on_fill: Callable[[int, int, int], None] | None = None,
                on_phase: Callable[[str], None] | None = None) -> list[dict]:
    """Grow one queue file through ``sizes`` and measure at each; returns one dict per size."""
    path = workdir / "scaling.sqlite3"
    results = []
    for size in sorted(sizes):
        if on_phase:
            on_phase(f"filling queue to {size:,}")
        have = queued(path) if path.exists() else 0
        t = time.perf_counter()
        prefill(path, size, body_size, (lambda done, size=size, have=have: on_fill(size, have + done, size))
                if on_fill else None)
        fill_s = time.perf_counter() - t
        if on_phase:
            on_phase(f"measuring with {size:,} queued")
        res = measure_in_subprocess(path, sequential=sequential, concurrent=concurrent, body_size=body_size)
        res["size"] = size
        res["fill_s"] = fill_s
        results.append(res)
    return results


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.queue_scaling", description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="100,100000,1000000")
    ap.add_argument("--body-size", type=int, default=4096)
    ap.add_argument("--sequential", type=int, default=100)
    ap.add_argument("--concurrent", type=int, default=400)
    ap.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(asyncio.run(measure(args.measure, args.sequential, args.concurrent, args.body_size))))
        return 0
    with tempfile.TemporaryDirectory(prefix="mailpipe-scaling-") as tmp:
        for res in run_scaling(Path(tmp), [int(s) for s in args.sizes.split(",")], body_size=args.body_size,
                               sequential=args.sequential, concurrent=args.concurrent,
                               on_phase=lambda p: print(p, file=sys.stderr)):
            print(json.dumps(res))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
