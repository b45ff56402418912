"""Sizing figures of the postgres queue (docs/scale-out.md): the backend alone, then one and two nodes.

Not a test: run it by hand (as root, with .ci/install-postgres.sh done)::

    .venv/bin/python -m tests.postgres.bench_queue [--messages 2000] [--mail 400]

It starts a private cluster (fsync and synchronous_commit on) and prints:

1. the backend: stores per second from 20 concurrent tasks (4 KB bodies, one recipient, pool
   of 10), then claim latency (batches of 20) and record+release per second;
2. end to end: 20 SMTP sessions x 4 KB handed to one ``pipeline serve`` node on the sqlite
   queue (for comparison), to one node on the postgres queue, then spread over two nodes on
   one queue, delivered to a recording sink; messages accepted per second and delivered per
   second (until the queue is empty), for each.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from mailpipe.core.message import RecipientState
from mailpipe.core.testing.queue import new_message, update
from mailpipe.plugins.postgres_queue import PostgresQueue
from tests.peers.mailpipe import MailpipeProcess
from tests.peers.net import free_port, wait_until
from tests.peers.postgres import PostgresPeer
from tests.peers.sink import RecordingSink

from .helpers import node_config, queued, send

OWNER = "bench:1:token"


async def backend(dsn: str, messages: int, size: int) -> dict[str, float]:
    """Store, claim, record+release through ``PostgresQueue`` itself."""
    queue = PostgresQueue(dsn, pool_size=10, node="bench")
    await queue.open()
    try:
        made = [new_message(time.time() - 1, ["bob@example.net"], size=size) for _ in range(messages)]
        todo = iter(made)

        async def storer() -> None:
            for message, data in todo:
                await queue.store(message, data)

        began = time.perf_counter()
        await asyncio.gather(*(storer() for _ in range(20)))
        stored = messages / (time.perf_counter() - began)

        latencies: list[float] = []
        claimed = []
        while True:
            t = time.perf_counter()
            now = time.time()
            batch = await queue.claim_due(now, 20, OWNER, now + 600)
            latencies.append((time.perf_counter() - t) * 1000)
            if not batch:
                break
            claimed += batch
        pending = iter(claimed)

        async def recorder() -> None:
            for message in pending:
                now = time.time()
                await queue.record(message, [update(message, "bob@example.net", RecipientState.DELIVERED, now)], now)
                await queue.release(message.id, OWNER)

        began = time.perf_counter()
        await asyncio.gather(*(recorder() for _ in range(20)))
        recorded = len(claimed) / (time.perf_counter() - began)
        latencies.sort()
        return {"store/s": stored, "claim20 median ms": statistics.median(latencies),
                "claim20 p95 ms": latencies[int(len(latencies) * 0.95)], "record+release/s": recorded}
    finally:
        await queue.close()


def end_to_end(peer: PostgresPeer, workdir: Path, nodes: int, mail: int, size: int,
               sqlite: bool = False) -> dict[str, float]:
    """``mail`` messages from 20 SMTP sessions spread over ``nodes`` nodes; accepted/s and delivered/s.

    ``sqlite``: one node on the default sqlite queue instead, for comparison.
    """
    dsn = peer.create_database("e2e")
    body = ("x" * 76 + "\n") * (size // 77)
    with RecordingSink("127.0.1.63") as sink:
        procs = []
        for n in range(nodes):
            config = node_config(f"node{n + 1}", dsn, sink, lease="30s")
            config["queue"]["postgres"]["pool_size"] = 10
            config["state_dir"] = str(workdir / f"e2e{nodes}-node{n + 1}" / "state")
            config["listen"] = [f"127.0.0.1:{free_port()}"]
            if sqlite:
                config["queue"] = {"sqlite": {}}
            procs.append(MailpipeProcess(workdir / f"e2e{nodes}-node{n + 1}", config).start())
        try:
            counter = iter(range(mail))
            lock = threading.Lock()

            def session(k: int) -> None:
                while True:
                    with lock:
                        i = next(counter, None)
                    if i is None:
                        return
                    send(procs[(k + i) % nodes], f"bench {i}", body=body)

            began = time.perf_counter()
            threads = [threading.Thread(target=session, args=(k,)) for k in range(20)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            accepted = mail / (time.perf_counter() - began)
            sink.wait_for(mail, timeout=600)
            if not sqlite:
                wait_until(lambda: not queued(dsn), 120, "queue empty")
            delivered = mail / (time.perf_counter() - began)
        finally:
            for p in procs:
                p.stop()
    return {"accepted/s": accepted, "delivered/s (end to end)": delivered}


def main() -> None:
    """Start a private cluster and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--mail", type=int, default=400)
    parser.add_argument("--size", type=int, default=4096)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-pgq-"))
    with PostgresPeer(work / "pg") as peer:
        figures: dict[str, Any] = asyncio.run(backend(peer.create_database("backend"), args.messages, args.size))
        print("backend:", ", ".join(f"{k} {v:.1f}" for k, v in figures.items()))
        figures = end_to_end(peer, work, 1, args.mail, args.size, sqlite=True)
        print("1 node, sqlite queue:", ", ".join(f"{k} {v:.1f}" for k, v in figures.items()))
        for nodes in (1, 2):
            figures = end_to_end(peer, work, nodes, args.mail, args.size)
            print(f"{nodes} node(s), postgres queue:", ", ".join(f"{k} {v:.1f}" for k, v in figures.items()))
        peer.remove()


if __name__ == "__main__":
    main()
