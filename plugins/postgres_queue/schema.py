"""The queue's tables, created at first start and migrated through the version table ``mailpipe_schema``.

``migrate`` runs once per open, under a transaction-level advisory lock, so nodes that start
together neither create the tables twice nor migrate concurrently. A database whose schema
is newer than this code knows is refused with a ``QueueError``: an older node must not write
into tables it does not understand.
"""

from __future__ import annotations

from psycopg import AsyncConnection

from mailpipe.core.queue import QueueError

SCHEMA_VERSION = 1
MIGRATION_LOCK = 0x6D61696C70697065  # "mailpipe": the advisory lock key taken while migrating

# Each entry brings the schema from version N-1 to N (index 0: from nothing to 1).
MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE messages (
            id text PRIMARY KEY,
            sender text NOT NULL,
            created double precision NOT NULL,
            size bigint NOT NULL,
            client text NOT NULL DEFAULT '{}',
            mail_options text NOT NULL DEFAULT '[]',
            attributes text NOT NULL DEFAULT '{}',
            node text NOT NULL DEFAULT '',
            lease_owner text,
            lease_until double precision,
            done_at double precision)""",
        "CREATE INDEX messages_active ON messages (created) WHERE done_at IS NULL",
        "CREATE INDEX messages_done ON messages (done_at) WHERE done_at IS NOT NULL",
        "CREATE INDEX messages_leased ON messages (lease_owner) WHERE lease_owner IS NOT NULL",
        """CREATE TABLE bodies (
            message_id text PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
            data bytea NOT NULL)""",
        """CREATE TABLE recipients (
            id bigserial PRIMARY KEY,
            message_id text NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
            address text NOT NULL,
            state text NOT NULL,
            attempts integer NOT NULL DEFAULT 0,
            next_attempt double precision NOT NULL,
            last_reply text,
            updated double precision NOT NULL)""",
        "CREATE INDEX recipients_message ON recipients (message_id)",
        # Finding due work reads only this partial index: active recipients by next attempt time.
        "CREATE INDEX recipients_due ON recipients (next_attempt) WHERE state IN ('pending', 'deferred')",
        """CREATE TABLE attempts (
            id bigserial PRIMARY KEY,
            time double precision NOT NULL,
            message_id text NOT NULL,
            sender text NOT NULL DEFAULT '',
            recipient text NOT NULL,
            outcome text NOT NULL,
            route text NOT NULL DEFAULT '',
            remote_host text,
            remote_addr text,
            code integer,
            enhanced text,
            text text NOT NULL DEFAULT '',
            duration double precision NOT NULL DEFAULT 0,
            action text NOT NULL DEFAULT '',
            node text NOT NULL DEFAULT '')""",
        "CREATE INDEX attempts_message ON attempts (message_id)",
        "CREATE INDEX attempts_time ON attempts (time)",
        """CREATE TABLE events (
            id bigserial PRIMARY KEY,
            time double precision NOT NULL,
            kind text NOT NULL,
            level text NOT NULL,
            text text NOT NULL,
            data text NOT NULL DEFAULT '{}',
            node text NOT NULL DEFAULT '')""",
        "CREATE INDEX events_time ON events (time)",
        # One row per lease owner (a running scheduler): alive while a node renews it.
        """CREATE TABLE owners (
            owner text PRIMARY KEY,
            node text NOT NULL DEFAULT '',
            lease double precision NOT NULL,
            alive_until double precision NOT NULL)""",
        # Cluster-wide chores (pruning, alert checks): when each last ran, and where.
        """CREATE TABLE jobs (
            job text PRIMARY KEY,
            last_run double precision NOT NULL,
            node text NOT NULL DEFAULT '')""",
        # Records whose commit went through although the client saw the connection drop.
        """CREATE TABLE records (
            key text PRIMARY KEY,
            time double precision NOT NULL)""",
        "CREATE INDEX records_time ON records (time)",
    ],
]
assert len(MIGRATIONS) == SCHEMA_VERSION


async def migrate(conn: AsyncConnection, where: str) -> int:
    """Create or bring the schema up to ``SCHEMA_VERSION``; return the version found before.

    Called once by ``PostgresQueue.open`` on a connection in autocommit mode; ``where`` (the
    DSN without its password) names the database in errors. Raises ``QueueError`` for a newer
    schema.
    """
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        await conn.execute("CREATE TABLE IF NOT EXISTS mailpipe_schema (version integer NOT NULL)")
        row = await (await conn.execute("SELECT max(version) FROM mailpipe_schema")).fetchone()
        found = int(row[0]) if row and row[0] is not None else 0
        if found > SCHEMA_VERSION:
            raise QueueError(
                f"queue database {where} has schema version {found}, newer than this mailpipe understands "
                f"({SCHEMA_VERSION}); upgrade mailpipe on this node, or point queue.postgres.dsn elsewhere"
            )
        for version in range(found, SCHEMA_VERSION):
            for statement in MIGRATIONS[version]:
                await conn.execute(statement)  # type: ignore[arg-type]
        if found < SCHEMA_VERSION:
            await conn.execute("DELETE FROM mailpipe_schema")
            await conn.execute("INSERT INTO mailpipe_schema (version) VALUES (%s)", (SCHEMA_VERSION,))
    return found
