"""The delivery face's SQL: store, claim, renew, release, recover, record, next due, body.

Each function is a job ``fn(conn, ...)`` that ``SqliteQueue`` runs on the worker thread,
inside the worker's transaction. A lease is ``messages.lease_owner``/``lease_until``; a
claim also moves its recipients' ``next_attempt`` to the lease's end, so they are not due
again while it holds, and ``renew``, ``release`` and ``recover`` move back exactly the
recipients whose ``next_attempt`` is still that lease end (claimed, not recorded since).
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
from pathlib import Path
from typing import Any

from mailpipe.core.message import Message, Recipient, RecipientState
from mailpipe.core.queue import QueueError, RecipientUpdate

ACTIVE = "('pending', 'deferred')"
INLINE_BODY_LIMIT = 256 * 1024

MESSAGE_COLUMNS = "id, sender, created, size, mail_options, attributes"


def owner_alive(owner: str) -> bool:
    """Is the process named by a lease owner (``host:pid:token``) still running?

    Only a process on this host can be told dead; any other owner counts as alive, and
    ``recover`` then trusts its lease time. A zombie is dead: a worker killed together with its
    supervisor stays one until the system reaps it, and its restarted successor must not wait
    for its leases to run out.
    """
    try:
        host, pid, _ = owner.split(":", 2)
        if host != socket.gethostname():
            return True  # cannot tell: trust the lease time
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (ValueError, PermissionError):
        return True
    try:
        state = Path(f"/proc/{int(pid)}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def message_from_row(row: sqlite3.Row | tuple[Any, ...], recipients: list[Recipient]) -> Message:
    """A ``Message`` from a ``MESSAGE_COLUMNS`` row (no body and no loader: the caller adds them)."""
    mid, sender, created, size, mail_options, attributes = row
    return Message(id=mid, sender=sender, recipients=recipients, created=created, size=size,
                   mail_options=json.loads(mail_options or "[]"), attributes=json.loads(attributes or "{}"))


def recipients_of(conn: sqlite3.Connection, where: str, params: tuple[Any, ...]) -> list[Recipient]:
    """The recipients matching ``where`` (on the recipients table), in arrival order."""
    return [
        Recipient(address=a, state=RecipientState(s), attempts=n, next_attempt=t, last_reply=lr, id=i)
        for i, a, s, n, t, lr in conn.execute(
            f"SELECT id, address, state, attempts, next_attempt, last_reply FROM recipients {where} ORDER BY id",
            params,
        )
    ]


def insert(conn: sqlite3.Connection, message: Message, data: bytes, owner: str | None = None,
           lease_until: float | None = None) -> None:
    """Insert a new message, its body and its recipients (pending, due at arrival; held when ``accept``
    held them).

    With ``owner``, the message is claimed by it as it is stored (``store_claimed``): leased until
    ``lease_until``, its recipients due then, as ``claim`` leaves them.
    """
    client = json.dumps(message.session.__dict__ if message.session else {})
    conn.execute(
        "INSERT INTO messages (id, sender, created, size, client, mail_options, attributes, lease_owner, lease_until) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (message.id, message.sender, message.created, len(data), client,
         json.dumps(message.mail_options), json.dumps(message.attributes, default=str), owner,
         lease_until if owner else None),
    )
    conn.execute("INSERT INTO bodies (message_id, data) VALUES (?, ?)", (message.id, data))
    due = lease_until if owner and lease_until is not None else message.created
    conn.executemany(
        "INSERT INTO recipients (message_id, address, state, attempts, next_attempt, updated) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [(message.id, r.address, (r.state if r.state is RecipientState.HELD else RecipientState.PENDING).value, 0,
          due, message.created) for r in message.recipients],
    )


def claim(conn: sqlite3.Connection, now: float, limit: int, owner: str,
          lease_until: float) -> list[tuple[Message, str]]:
    """Lease up to ``limit`` messages with due recipients to ``owner``.

    Returns each message (its due recipients only, a small body inline) with its attributes
    as stored, so that ``record`` rewrites them only when they changed.
    """
    ids: list[str] = []
    rows = conn.execute(
        f"SELECT message_id FROM recipients WHERE state IN {ACTIVE} AND next_attempt <= ? "
        "ORDER BY next_attempt LIMIT ?", (now, limit * 8),
    ).fetchall()
    for (mid,) in rows:
        if mid not in ids:
            ids.append(mid)
    claimed: list[tuple[Message, str]] = []
    for mid in ids:
        if len(claimed) >= limit:
            break
        cur = conn.execute(
            "UPDATE messages SET lease_owner = ?, lease_until = ? WHERE id = ? AND done_at IS NULL "
            "AND (lease_owner IS NULL OR lease_owner = ? OR lease_until < ?)",
            (owner, lease_until, mid, owner, now),
        )
        if cur.rowcount != 1:
            continue
        recipients = recipients_of(conn, f"WHERE message_id = ? AND state IN {ACTIVE} AND next_attempt <= ?",
                                   (mid, now))
        conn.execute(
            f"UPDATE recipients SET next_attempt = ? WHERE message_id = ? AND state IN {ACTIVE} "
            "AND next_attempt <= ?", (lease_until, mid, now),
        )
        row = conn.execute(f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ?", (mid,)).fetchone()
        message = message_from_row(row, recipients)
        if message.size <= INLINE_BODY_LIMIT:
            # Small bodies come with the claim: one job less per delivery. Larger ones are
            # read when the deliver step asks, so memory stays bounded by concurrency x limit.
            body = conn.execute("SELECT data FROM bodies WHERE message_id = ?", (mid,)).fetchone()
            if body is not None:
                message.set_body(bytes(body[0]))
        claimed.append((message, row[5] or "{}"))
    return claimed


def _move_lease_end(conn: sqlite3.Connection, message_id: str, old_end: float | None, next_attempt: float) -> None:
    """Claimed recipients not recorded since (their next_attempt is still the lease end) get ``next_attempt``.

    A recorded deferral has its own time, which may well lie beyond the lease (retry
    intervals longer than a lease): it is kept.
    """
    conn.execute(
        f"UPDATE recipients SET next_attempt = ? WHERE message_id = ? AND state IN {ACTIVE} AND next_attempt = ?",
        (next_attempt, message_id, old_end or 0),
    )


def renew(conn: sqlite3.Connection, owner: str, message_ids: list[str], lease_until: float) -> None:
    """Extend ``owner``'s leases on these messages, and their claimed recipients with them."""
    for mid in message_ids:
        row = conn.execute("SELECT lease_until FROM messages WHERE id = ? AND lease_owner = ?",
                           (mid, owner)).fetchone()
        if row is None:
            continue  # not (or no longer) ours: finished, released, or taken over after it ran out
        _move_lease_end(conn, mid, row[0], lease_until)
        conn.execute("UPDATE messages SET lease_until = ? WHERE id = ?", (lease_until, mid))


def release(conn: sqlite3.Connection, message_id: str, owner: str, now: float) -> None:
    """End ``owner``'s lease; recipients claimed but not recorded (cut short) are due at ``now``."""
    row = conn.execute("SELECT lease_until FROM messages WHERE id = ? AND lease_owner = ?",
                       (message_id, owner)).fetchone()
    if row is None:
        return
    _move_lease_end(conn, message_id, row[0], now)
    conn.execute("UPDATE messages SET lease_owner = NULL, lease_until = NULL WHERE id = ?", (message_id,))


def recover(conn: sqlite3.Connection, owner: str, now: float) -> int:
    """End the leases of owners that are gone (lease ran out, or process dead); how many messages."""
    count = 0
    for mid, lease_owner, until in conn.execute(
        "SELECT id, lease_owner, lease_until FROM messages WHERE lease_owner IS NOT NULL"
    ).fetchall():
        if lease_owner == owner or (until is not None and until > now and owner_alive(lease_owner)):
            continue
        _move_lease_end(conn, mid, until, now)
        conn.execute("UPDATE messages SET lease_owner = NULL, lease_until = NULL WHERE id = ?", (mid,))
        count += 1
    return count


def record(conn: sqlite3.Connection, message: Message, updates: list[RecipientUpdate], now: float,
           new_messages: list[tuple[Message, bytes]], attributes: str | None) -> bool:
    """Persist one attempt's updates, the attributes (``None``: unchanged) and the new messages.

    Returns whether the message is finished (no active recipient left): then its body is
    gone and its lease ended.
    """
    by_address = {r.address: r for r in message.recipients}
    for update in updates:
        a = update.attempt
        conn.execute(
            "INSERT INTO attempts (time, message_id, sender, recipient, outcome, route, remote_host, "
            "remote_addr, code, enhanced, text, duration, action) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (a.time, a.message_id, a.sender, a.recipient, a.outcome, a.route, a.remote_host, a.remote_addr,
             a.code, a.enhanced, a.text, a.duration, a.action),
        )
        recipient = by_address.get(update.recipient)
        if recipient is None:
            continue
        which, key = ("id = ?", recipient.id) if recipient.id is not None else ("address = ?", recipient.address)
        # A recipient already ended (delivered, failed, expired) is never changed again.
        conn.execute(
            "UPDATE recipients SET state = ?, attempts = attempts + 1, next_attempt = ?, last_reply = ?, "
            f"updated = ? WHERE message_id = ? AND {which} AND state IN ('pending', 'deferred', 'held')",
            (update.state.value, update.next_attempt, update.last_reply, now, message.id, key),
        )
    if attributes is not None:
        conn.execute("UPDATE messages SET attributes = ? WHERE id = ?", (attributes, message.id))
    for new, data in new_messages:
        insert(conn, new, data)
    active = conn.execute(
        "SELECT count(*) FROM recipients WHERE message_id = ? AND state IN ('pending', 'deferred', 'held')",
        (message.id,),
    ).fetchone()[0]
    if active:
        return False
    conn.execute("UPDATE messages SET done_at = ?, lease_owner = NULL, lease_until = NULL WHERE id = ?",
                 (now, message.id))
    conn.execute("DELETE FROM bodies WHERE message_id = ?", (message.id,))
    return True


def next_due(conn: sqlite3.Connection) -> float | None:
    """The earliest next_attempt of a pending or deferred recipient (the partial index ``recipients_due``)."""
    return conn.execute(f"SELECT min(next_attempt) FROM recipients WHERE state IN {ACTIVE}").fetchone()[0]


def read_body(conn: sqlite3.Connection, message_id: str) -> bytes:
    """The stored bytes of a message; ``QueueError`` when it has none (finished or deleted)."""
    row = conn.execute("SELECT data FROM bodies WHERE message_id = ?", (message_id,)).fetchone()
    if row is None:
        raise QueueError(f"message {message_id} has no stored body")
    return bytes(row[0])
