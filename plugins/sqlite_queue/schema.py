"""The queue's tables and indexes, created with sqlite-utils; the schema version check."""

from __future__ import annotations

import sqlite3

from mailpipe.core.queue import QueueError

SCHEMA_VERSION = 2
# 1: first version. 2: attempts.action (what an attempt led to), index for pruning finished messages.


def create_schema(conn: sqlite3.Connection, path: str) -> None:
    """Create the tables on a new file; refuse a file written by a newer mailpipe."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise QueueError(
            f"queue database {path} has schema version {version}, newer than this mailpipe "
            f"understands ({SCHEMA_VERSION}); upgrade mailpipe or point queue.sqlite.path elsewhere"
        )
    if version == SCHEMA_VERSION:
        return
    if version == 0:
        _create(conn)
    _migrate(conn)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring a version 1 file (or a just-created one) to the current version; idempotent."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(attempts)")}
    if "action" not in columns:
        conn.execute("ALTER TABLE attempts ADD COLUMN action TEXT")
    conn.execute("CREATE INDEX IF NOT EXISTS messages_done ON messages(done_at) WHERE done_at IS NOT NULL")


def _create(conn: sqlite3.Connection) -> None:
    from sqlite_utils import Database  # only for a new file: the queue commands open existing ones quickly

    db = Database(conn)
    db["messages"].create(
        {
            "id": str, "sender": str, "created": float, "size": int, "client": str,
            "mail_options": str, "attributes": str, "lease_owner": str, "lease_until": float,
            "done_at": float,
        },
        pk="id", not_null={"sender", "created", "size"}, if_not_exists=True,
    )
    db["bodies"].create({"message_id": str, "data": bytes}, pk="message_id", if_not_exists=True)
    db["recipients"].create(
        {
            "id": int, "message_id": str, "address": str, "state": str, "attempts": int,
            "next_attempt": float, "last_reply": str, "updated": float,
        },
        pk="id", not_null={"message_id", "address", "state"}, if_not_exists=True,
    )
    db["attempts"].create(
        {
            "id": int, "time": float, "message_id": str, "sender": str, "recipient": str, "outcome": str,
            "route": str, "remote_host": str, "remote_addr": str, "code": int, "enhanced": str,
            "text": str, "duration": float,
        },
        pk="id", if_not_exists=True,
    )
    db["events"].create(
        {"id": int, "time": float, "kind": str, "level": str, "text": str, "data": str},
        pk="id", if_not_exists=True,
    )
    db["recipients"].create_index(["message_id"], if_not_exists=True)
    db["attempts"].create_index(["message_id"], if_not_exists=True)
    db["attempts"].create_index(["time"], if_not_exists=True)
    db["events"].create_index(["time"], if_not_exists=True)
    # Finding due work reads only this partial index: active recipients by next attempt time.
    conn.execute(
        "CREATE INDEX IF NOT EXISTS recipients_due ON recipients(next_attempt) "
        "WHERE state IN ('pending', 'deferred')"
    )
    conn.execute("CREATE INDEX IF NOT EXISTS messages_active ON messages(created) WHERE done_at IS NULL")
    conn.execute("CREATE INDEX IF NOT EXISTS messages_leased ON messages(lease_until) "
                 "WHERE lease_owner IS NOT NULL")
