"""What several nodes on one queue agree on through the database: who is alive, dead owners' mail, chores.

A lease owner (one running scheduler) is alive while its node renews its row in ``owners``
(``alive_until``, on the database server's clock, so the nodes' clocks do not matter). A node
that stops renewing — killed, powered off, cut off — has its leased messages taken over by
the others once ``lease`` has passed: ``take_over`` ends those leases and makes the claimed,
unrecorded recipients due again. For ``lease`` seconds after the database server itself
started, every owner counts as alive, so a database restart does not hand the mail of live
nodes (which had no way to renew meanwhile) to whichever node reconnects first.
Cluster-wide chores (pruning, alert checks) are rows in ``jobs``: one node wins each period.
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

from .delivery import ACTIVE, ALIVE, DB_NOW

CHANNEL = "mailpipe_queue"  # LISTEN/NOTIFY channel: "something became due", payload: the sender's token


async def notify(conn: AsyncConnection[Any], token: str) -> None:
    """Tell every listening node (at COMMIT) that mail became due; ``token`` lets the sender skip its own."""
    await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, token))


async def heartbeat(conn: AsyncConnection[Any], owners: list[str], node: str, lease: float) -> None:
    """These owners (schedulers of this node) are alive for another ``lease`` seconds."""
    if owners:
        await conn.execute(
            f"""INSERT INTO owners (owner, node, lease, alive_until)
                SELECT o, %(node)s, %(lease)s, {DB_NOW} + %(lease)s FROM unnest(%(owners)s::text[]) AS o
                ON CONFLICT (owner) DO UPDATE SET alive_until = EXCLUDED.alive_until, lease = EXCLUDED.lease,
                                                  node = EXCLUDED.node""",
            {"owners": owners, "node": node, "lease": lease},
        )


async def take_over(conn: AsyncConnection[Any], keep: list[str], now: float) -> int:
    """End the leases of owners that are gone; claimed, unrecorded recipients are due at ``now``.

    An owner is gone when its lease ran out by ``now`` (wall clock) or its node stopped
    renewing it. Owners in ``keep`` (this node's) are never taken from. Messages another
    transaction has locked are left for the next round. Returns how many messages.
    """
    cur = await conn.execute(
        f"""WITH gone AS (SELECT m.id, m.lease_until FROM messages m
                          WHERE m.lease_owner IS NOT NULL AND NOT (m.lease_owner = ANY(%(keep)s::text[]))
                            AND (m.lease_until < %(now)s
                                 OR NOT EXISTS (SELECT 1 FROM owners o WHERE o.owner = m.lease_owner
                                                AND {ALIVE.format(now=DB_NOW)}))
                          FOR UPDATE OF m SKIP LOCKED),
                 moved AS (UPDATE recipients r SET next_attempt = %(now)s FROM gone
                           WHERE r.message_id = gone.id AND r.state IN {ACTIVE}
                             AND r.next_attempt = gone.lease_until),
                 freed AS (UPDATE messages m SET lease_owner = NULL, lease_until = NULL FROM gone
                           WHERE m.id = gone.id RETURNING m.id)
            SELECT count(*) FROM freed""",
        {"keep": keep, "now": now},
    )
    row = await cur.fetchone()
    return 0 if row is None else int(row[0])


async def run_once(conn: AsyncConnection[Any], job: str, now: float, every: float, node: str) -> bool:
    """Whether ``node`` runs ``job`` now: true for one caller per ``every`` seconds across the cluster."""
    cur = await conn.execute(
        """INSERT INTO jobs (job, last_run, node) VALUES (%(job)s, %(now)s, %(node)s)
           ON CONFLICT (job) DO UPDATE SET last_run = EXCLUDED.last_run, node = EXCLUDED.node
           WHERE jobs.last_run <= EXCLUDED.last_run - %(every)s
           RETURNING job""",
        {"job": job, "now": now, "node": node, "every": every},
    )
    return await cur.fetchone() is not None


async def retire(conn: AsyncConnection[Any], owners: list[str]) -> None:
    """A clean stop: forget these owners at once (unless they still hold leases, which then run out)."""
    if owners:
        await conn.execute("DELETE FROM owners o WHERE o.owner = ANY(%s) AND NOT EXISTS "
                           "(SELECT 1 FROM messages m WHERE m.lease_owner = o.owner)", (owners,))
