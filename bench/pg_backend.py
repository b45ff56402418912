"""The postgres queue backend alone (``PostgresQueue``, no SMTP): store, claim, record+release rates.

Run it from the repository root (as root, with .ci/install-postgres.sh done)::

    python -m bench.pg_backend [--messages 2000] [--size 4096] [--pool 10]

It starts a private cluster (fsync and synchronous_commit on) and prints stores per
second from 20 concurrent tasks (one recipient each), the latency of claims of 20
(median, p95) until nothing is due, and record (delivered) + release per second from
20 concurrent tasks. Whole nodes (SMTP in, SMTP out, one and two nodes on one queue)
are measured by ``python -m bench.run --postgres``; see docs/scale-out.md.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from mailpipe.core.message import Message, RecipientState
from mailpipe.core.testing.queue_helpers import new_message, update
from mailpipe.plugins.postgres_queue import PostgresQueue
from tests.peers.postgres import PostgresPeer

from .pg_cluster import cluster_main

OWNER = "bench:1:token"
RECIPIENT = "bob@example.net"
T = TypeVar("T")


async def _in_parallel(items: list[T], work: Callable[[T], Awaitable[object]], tasks: int = 20) -> float:
    """Run ``await work(item)`` for every item from ``tasks`` concurrent tasks; items per second."""
    todo = iter(items)

    async def worker() -> None:
        for item in todo:
            await work(item)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    return len(items) / (time.perf_counter() - began)


async def backend(dsn: str, messages: int, size: int, pool: int = 10) -> dict[str, float]:
    """Store ``messages``, claim them all in batches of 20, record each delivered and release it."""
    queue = PostgresQueue(dsn, pool_size=pool, node="bench")
    await queue.open()
    try:
        made = [new_message(time.time() - 1, [RECIPIENT], size=size) for _ in range(messages)]
        stored = await _in_parallel(made, lambda pair: queue.store(*pair))

        latencies: list[float] = []
        claimed: list[Message] = []
        while True:
            began = time.perf_counter()
            now = time.time()
            batch = await queue.claim_due(now, 20, OWNER, now + 600)
            latencies.append((time.perf_counter() - began) * 1000)
            if not batch:
                break
            claimed += batch

        async def record(message: Message) -> None:
            now = time.time()
            await queue.record(message, [update(message, RECIPIENT, RecipientState.DELIVERED, now)], now)
            await queue.release(message.id, OWNER)

        recorded = await _in_parallel(claimed, record)
        latencies.sort()
        return {"store/s": stored, "claim20 median ms": statistics.median(latencies),
                "claim20 p95 ms": latencies[int(len(latencies) * 0.95)], "record+release/s": recorded}
    finally:
        await queue.close()


def measure(peer: PostgresPeer, args: argparse.Namespace) -> None:
    """Run :func:`backend` ``args.rounds`` times on fresh databases and print each round's figures."""
    for round_ in range(args.rounds):
        figures = asyncio.run(backend(peer.create_database("backend"), args.messages, args.size, args.pool))
        print(f"round {round_ + 1}: " + ", ".join(f"{k} {v:.1f}" for k, v in figures.items()), flush=True)


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pool", type=int, default=10, help="the queue's pool_size (default 10)")
    parser.add_argument("--rounds", type=int, default=1, help="repeat on a fresh database (default 1)")


def main() -> None:
    """Start a private cluster, measure the backend, print the figures."""
    cluster_main("python -m bench.pg_backend", __doc__.splitlines()[0], measure, _options)


if __name__ == "__main__":
    main()
