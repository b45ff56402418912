"""Which PostgreSQL driver for the postgres queue: psycopg 3 (async, psycopg-pool) or asyncpg?

Run it from the repository root (as root, with .ci/install-postgres.sh done)::

    pip install asyncpg   # not a dependency of mailpipe; without it, --drivers psycopg
    python -m bench.pg_drivers [--messages 2000] [--size 4096] [--rounds 2] [--drivers psycopg,asyncpg]

It starts a private cluster, and with each driver (pool of 10 connections) stores messages
from 20 concurrent tasks (one transaction each: message row, body as bytea, two recipients;
synchronous_commit on), then claims them one batch at a time with ``FOR UPDATE SKIP LOCKED``
(batches of 10) and prints stores per second and the claim latency (median, p95).
The schema is a cut-down copy of the backend's, so the numbers compare the drivers, not the SQL.
The figures and the choice are in docs/scale-out.md ("Measured sizing figures").
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

import psycopg
from psycopg_pool import AsyncConnectionPool

from tests.peers.postgres import PostgresPeer

from .pg_cluster import cluster_main

SCHEMA = """
CREATE TABLE messages (id text PRIMARY KEY, sender text NOT NULL, created double precision NOT NULL,
                       size integer NOT NULL, lease_owner text, lease_until double precision);
CREATE TABLE bodies (message_id text PRIMARY KEY, data bytea NOT NULL);
CREATE TABLE recipients (id bigserial PRIMARY KEY, message_id text NOT NULL, address text NOT NULL,
                         state text NOT NULL, next_attempt double precision NOT NULL);
CREATE INDEX recipients_due ON recipients (next_attempt) WHERE state IN ('pending', 'deferred');
CREATE INDEX recipients_message ON recipients (message_id);
"""
CLAIM = """
WITH due AS (
    SELECT m.id FROM messages m
    WHERE m.id IN (SELECT message_id FROM recipients WHERE state IN ('pending', 'deferred') AND next_attempt <= $1
                   ORDER BY next_attempt LIMIT $2 * 4)
      AND (m.lease_owner IS NULL OR m.lease_until < $1)
    LIMIT $2 FOR UPDATE SKIP LOCKED
)
UPDATE messages SET lease_owner = $3, lease_until = $4 FROM due WHERE messages.id = due.id RETURNING messages.id
"""
MOVE = "UPDATE recipients SET next_attempt = $1 WHERE message_id = ANY($2) AND state IN ('pending', 'deferred')"

Store = Callable[[str, bytes], Awaitable[None]]
Claim = Callable[[float], Awaitable[int]]


async def run_concurrently(store: Store, messages: int, body: bytes, tasks: int = 20) -> float:
    """Store ``messages`` from ``tasks`` concurrent tasks; stores per second."""
    todo = iter(range(messages))

    async def worker() -> None:
        for _ in todo:
            await store(uuid.uuid4().hex, body)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    return messages / (time.perf_counter() - began)


async def claim_all(claim: Claim) -> list[float]:
    """Claim batches until nothing is due; each claim's latency in milliseconds."""
    latencies = []
    while True:
        began = time.perf_counter()
        got = await claim(time.time())
        latencies.append((time.perf_counter() - began) * 1000)
        if not got:
            return latencies


async def bench_psycopg(dsn: str, messages: int, body: bytes) -> tuple[float, list[float]]:
    """psycopg 3, AsyncConnectionPool of 10."""
    async with AsyncConnectionPool(dsn, min_size=10, max_size=10, open=False) as pool:
        await pool.open(wait=True)

        async def store(mid: str, data: bytes) -> None:
            async with pool.connection() as conn, conn.transaction():
                now = time.time()
                await conn.execute("INSERT INTO messages (id, sender, created, size) VALUES (%s, %s, %s, %s)",
                                   (mid, "alice@example.org", now, len(data)))
                await conn.execute("INSERT INTO bodies (message_id, data) VALUES (%s, %s)", (mid, data))
                async with conn.cursor() as cur:
                    await cur.executemany(
                        "INSERT INTO recipients (message_id, address, state, next_attempt) VALUES (%s, %s, %s, %s)",
                        [(mid, f"r{n}@example.net", "pending", now) for n in range(2)])

        async def claim(now: float) -> int:
            async with pool.connection() as conn, conn.transaction():
                cur = await conn.execute(CLAIM.replace("$1", "%(now)s").replace("$2", "%(limit)s")
                                         .replace("$3", "%(owner)s").replace("$4", "%(until)s"),
                                         {"now": now, "limit": 10, "owner": "bench", "until": now + 300})
                ids = [r[0] for r in await cur.fetchall()]
                await conn.execute(MOVE.replace("$1", "%s").replace("$2", "%s"), (now + 300, ids))
                return len(ids)

        rate = await run_concurrently(store, messages, body)
        return rate, await claim_all(claim)


async def bench_asyncpg(dsn: str, messages: int, body: bytes) -> tuple[float, list[float]]:
    """asyncpg, its own pool of 10."""
    import asyncpg  # noqa: PLC0415 - optional: only this bench needs it

    pool = await asyncpg.create_pool(dsn, min_size=10, max_size=10)
    try:
        async def store(mid: str, data: bytes) -> None:
            async with pool.acquire() as conn, conn.transaction():
                now = time.time()
                await conn.execute("INSERT INTO messages (id, sender, created, size) VALUES ($1, $2, $3, $4)",
                                   mid, "alice@example.org", now, len(data))
                await conn.execute("INSERT INTO bodies (message_id, data) VALUES ($1, $2)", mid, data)
                await conn.executemany(
                    "INSERT INTO recipients (message_id, address, state, next_attempt) VALUES ($1, $2, $3, $4)",
                    [(mid, f"r{n}@example.net", "pending", now) for n in range(2)])

        async def claim(now: float) -> int:
            async with pool.acquire() as conn, conn.transaction():
                ids = [r[0] for r in await conn.fetch(CLAIM, now, 10, "bench", now + 300)]
                await conn.execute(MOVE, now + 300, ids)
                return len(ids)

        rate = await run_concurrently(store, messages, body)
        return rate, await claim_all(claim)
    finally:
        await pool.close()


def fresh(peer: PostgresPeer) -> str:
    """A new database with the bench schema."""
    dsn = peer.create_database("bench")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SCHEMA)
    return dsn


DRIVERS: dict[str, Callable[[str, int, bytes], Awaitable[tuple[float, list[float]]]]] = {
    "psycopg": bench_psycopg, "asyncpg": bench_asyncpg}


def compare(peer: PostgresPeer, args: argparse.Namespace) -> None:
    """Bench each driver ``args.rounds`` times, alternating, on a fresh database each; print the figures."""
    body = b"x" * args.size
    unknown = set(args.drivers.split(",")) - set(DRIVERS)
    if unknown:
        raise SystemExit(f"unknown driver(s) {', '.join(sorted(unknown))}; choose from {', '.join(DRIVERS)}")
    for round_ in range(args.rounds):
        for name in args.drivers.split(","):
            rate, lat = asyncio.run(DRIVERS[name](fresh(peer), args.messages, body))
            lat.sort()
            print(f"round {round_ + 1} {name:8s} store {rate:7.0f}/s  claim of 10: median "
                  f"{statistics.median(lat):5.2f} ms  p95 {lat[int(len(lat) * 0.95)]:5.2f} ms "
                  f"({len(lat)} claims)", flush=True)


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rounds", type=int, default=2, help="rounds of every driver (default 2)")
    parser.add_argument("--drivers", default="psycopg,asyncpg", help="comma-separated: psycopg, asyncpg")


def main() -> None:
    """Start a private cluster, bench the drivers (alternating), print the figures."""
    cluster_main("python -m bench.pg_drivers", __doc__.splitlines()[0], compare, _options)


if __name__ == "__main__":
    main()
