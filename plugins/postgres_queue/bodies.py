"""Where message bodies live: a small interface, and its first implementation (``bytea`` rows).

The queue calls a ``BodyStore`` inside its own transactions (the connection is passed in), so
a body is stored, read and removed together with its message. A blob store (S3, a shared
file system) could implement the same four calls later: ``put`` writes the blob before the
transaction commits and keeps only its key in the row, ``remove`` deletes it after.
Bodies are never cached: a node holds only the bodies of the messages it is delivering.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from psycopg import AsyncConnection


class BodyStore(ABC):
    """Stores the bytes of each queued message, keyed by message id."""

    @abstractmethod
    async def put(self, conn: AsyncConnection[Any], message_id: str, data: bytes) -> None:
        """Store the body of a new message (called by ``store`` and ``record`` in their transaction)."""

    @abstractmethod
    async def get(self, conn: AsyncConnection[Any], message_id: str) -> bytes | None:
        """The body, or None if there is none (the message finished or was deleted)."""

    @abstractmethod
    async def get_small(self, conn: AsyncConnection[Any], message_ids: list[str], limit: int) -> dict[str, bytes]:
        """The bodies of these messages that are at most ``limit`` bytes (handed out with a claim)."""

    @abstractmethod
    async def remove(self, conn: AsyncConnection[Any], message_ids: list[str]) -> None:
        """Forget the bodies of finished or deleted messages."""


class ByteaBodies(BodyStore):
    """Bodies in the ``bodies`` table (``bytea``, TOASTed and compressed by PostgreSQL), read in binary."""

    async def put(self, conn: AsyncConnection[Any], message_id: str, data: bytes) -> None:
        """One row; the bytes travel in binary format (no hex doubling on the wire)."""
        await conn.execute("INSERT INTO bodies (message_id, data) VALUES (%s, %b)", (message_id, data))

    async def get(self, conn: AsyncConnection[Any], message_id: str) -> bytes | None:
        """Read in binary format: the bytes as stored, no text decoding."""
        async with conn.cursor(binary=True) as cur:
            await cur.execute("SELECT data FROM bodies WHERE message_id = %s", (message_id,))
            row = await cur.fetchone()
        return None if row is None else bytes(row[0])

    async def get_small(self, conn: AsyncConnection[Any], message_ids: list[str], limit: int) -> dict[str, bytes]:
        """Only bodies whose message size is within ``limit``; larger ones are read on demand."""
        if not message_ids:
            return {}
        async with conn.cursor(binary=True) as cur:
            await cur.execute(
                "SELECT b.message_id, b.data FROM bodies b JOIN messages m ON m.id = b.message_id "
                "WHERE b.message_id = ANY(%s) AND m.size <= %s", (message_ids, limit))
            return {mid: bytes(data) for mid, data in await cur.fetchall()}

    async def remove(self, conn: AsyncConnection[Any], message_ids: list[str]) -> None:
        """Delete the rows (a deleted message's row goes with it anyway: ON DELETE CASCADE)."""
        if message_ids:
            await conn.execute("DELETE FROM bodies WHERE message_id = ANY(%s)", (message_ids,))
