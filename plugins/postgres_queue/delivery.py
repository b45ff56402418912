"""The delivery face's SQL: store, claim, renew, release, record, next due, body.

Each function is a job ``fn(conn, ...)`` that ``PostgresQueue`` runs in one transaction.
A lease is ``messages.lease_owner``/``lease_until``; a claim locks the message rows it takes
(``FOR UPDATE SKIP LOCKED``: concurrent claims on other nodes pass them by) and moves the due
recipients' ``next_attempt`` to the lease's end, so they are not due again while it holds;
``renew``, ``release`` and the takeover of dead owners (``cluster.py``) move back exactly
the recipients whose ``next_attempt`` is still that lease end (claimed, not recorded since).
"""

from __future__ import annotations

import json
from typing import Any

from psycopg import AsyncConnection

from mailpipe.core.message import Message, Recipient, RecipientState
from mailpipe.core.queue import RecipientUpdate

from .bodies import BodyStore

ACTIVE = "('pending', 'deferred')"
UNFINISHED = "('pending', 'deferred', 'held')"
INLINE_BODY_LIMIT = 256 * 1024
SCAN_FACTOR = 8  # due recipients looked at per message wanted (several recipients, rows locked elsewhere)

MESSAGE_COLUMNS = "m.id, m.sender, m.created, m.size, m.mail_options, m.attributes"
RECIPIENT_COLUMNS = "id, address, state, attempts, next_attempt, last_reply"
ALIVE = "(o.alive_until >= {now} OR extract(epoch FROM pg_postmaster_start_time()) + o.lease >= {now})"
DB_NOW = "extract(epoch FROM clock_timestamp())"


def message_from_row(row: tuple[Any, ...], recipients: list[Recipient]) -> Message:
    """A ``Message`` from a ``MESSAGE_COLUMNS`` row (no body and no loader: the caller adds them)."""
    mid, sender, created, size, mail_options, attributes = row
    return Message(id=mid, sender=sender, recipients=recipients, created=created, size=size,
                   mail_options=json.loads(mail_options or "[]"), attributes=json.loads(attributes or "{}"))


def recipient_from_row(row: tuple[Any, ...]) -> Recipient:
    """A ``Recipient`` from a ``RECIPIENT_COLUMNS`` row."""
    rid, address, state, attempts, next_attempt, last_reply = row
    return Recipient(address=address, state=RecipientState(state), attempts=attempts, next_attempt=next_attempt,
                     last_reply=last_reply, id=rid)


async def recipients_of(conn: AsyncConnection[Any], where: str, params: tuple[Any, ...]) -> list[Recipient]:
    """The recipients matching ``where`` (on the recipients table), in arrival order."""
    cur = await conn.execute(f"SELECT {RECIPIENT_COLUMNS} FROM recipients {where} ORDER BY id", params)
    return [recipient_from_row(row) for row in await cur.fetchall()]


def stored_state(recipient: Recipient) -> str:
    """A new recipient's first state: held when ``accept`` held the message, pending otherwise."""
    return RecipientState.HELD.value if recipient.state is RecipientState.HELD else RecipientState.PENDING.value


async def insert(conn: AsyncConnection[Any], bodies: BodyStore, message: Message, data: bytes, node: str) -> None:
    """Insert a new message (received on ``node``), its body and its recipients (pending, due at arrival;
    held when ``accept`` held them)."""
    client = json.dumps(message.session.__dict__ if message.session else {})
    await conn.execute(
        "INSERT INTO messages (id, sender, created, size, client, mail_options, attributes, node) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        (message.id, message.sender, message.created, len(data), client, json.dumps(message.mail_options),
         json.dumps(message.attributes, default=str), node),
    )
    await bodies.put(conn, message.id, data)
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO recipients (message_id, address, state, attempts, next_attempt, updated) "
            "VALUES (%s, %s, %s, 0, %s, %s)",
            [(message.id, r.address, stored_state(r), message.created, message.created) for r in message.recipients],
        )


async def claim(conn: AsyncConnection[Any], bodies: BodyStore, now: float, limit: int, owner: str,
                lease_until: float) -> list[tuple[Message, str]]:
    """Lease up to ``limit`` messages with due recipients to ``owner``.

    A message is free when nobody leases it, its lease ran out at ``now``, or its owner is
    no longer alive (``owners``). The due message ids are looked up first (the partial index
    ``recipients_due``) and the messages by primary key (``= ANY(ARRAY(...))``): a plan that
    stays cheap whatever the table statistics say (a fresh queue has none). Returns each
    message (its due recipients only, a small body inline) with its attributes as stored, so
    that ``record`` rewrites them only when they changed.
    """
    cur = await conn.execute(
        f"""WITH picked AS (
                SELECT m.id FROM messages m
                WHERE m.id = ANY(ARRAY(SELECT r.message_id FROM recipients r
                                       WHERE r.state IN {ACTIVE} AND r.next_attempt <= %(now)s
                                       ORDER BY r.next_attempt LIMIT %(scan)s))
                  AND m.done_at IS NULL
                  AND (m.lease_owner IS NULL OR m.lease_owner = %(owner)s OR m.lease_until < %(now)s
                       OR NOT EXISTS (SELECT 1 FROM owners o WHERE o.owner = m.lease_owner
                                      AND {ALIVE.format(now=DB_NOW)}))
                ORDER BY m.created LIMIT %(limit)s
                FOR UPDATE OF m SKIP LOCKED)
            UPDATE messages m SET lease_owner = %(owner)s, lease_until = %(until)s FROM picked
            WHERE m.id = picked.id RETURNING {MESSAGE_COLUMNS}""",
        {"now": now, "scan": limit * SCAN_FACTOR, "owner": owner, "limit": limit, "until": lease_until},
    )
    rows = sorted(await cur.fetchall(), key=lambda row: (row[2], row[0]))  # oldest first
    if not rows:
        return []
    ids = [row[0] for row in rows]
    cur = await conn.execute(
        f"""WITH due AS (SELECT id, next_attempt FROM recipients
                         WHERE message_id = ANY(%(ids)s) AND state IN {ACTIVE} AND next_attempt <= %(now)s
                         FOR UPDATE)
            UPDATE recipients r SET next_attempt = %(until)s FROM due WHERE r.id = due.id
            RETURNING r.message_id, r.id, r.address, r.state, r.attempts, due.next_attempt, r.last_reply""",
        {"ids": ids, "now": now, "until": lease_until},
    )
    due: dict[str, list[Recipient]] = {mid: [] for mid in ids}
    for mid, *recipient in sorted(await cur.fetchall(), key=lambda row: row[1]):
        due[mid].append(recipient_from_row(tuple(recipient)))
    idle = [mid for mid, recipients in due.items() if not recipients]
    if idle:  # nothing due after all (changed since the ids were looked up): not ours to hold
        await conn.execute("UPDATE messages SET lease_owner = NULL, lease_until = NULL WHERE id = ANY(%s)", (idle,))
    small = await bodies.get_small(conn, [mid for mid in ids if due[mid]], INLINE_BODY_LIMIT)
    claimed: list[tuple[Message, str]] = []
    for row in rows:
        message = message_from_row(row[:6], due[row[0]])
        if message.recipients:
            message.set_body(small.get(message.id))
            claimed.append((message, row[5] or "{}"))
    return claimed


async def move_lease_end(conn: AsyncConnection[Any], ids: list[str], owner: str | None, new_end: float | None,
                         next_attempt: float) -> tuple[int, int]:
    """For ``owner``'s leases on ``ids`` (any owner when None): set the lease end, or end the lease (None).

    Claimed recipients not recorded since (their next_attempt is still the old lease end) get
    ``next_attempt``; a recorded deferral keeps its own time. Returns how many messages and
    recipients changed.
    """
    cur = await conn.execute(
        f"""WITH mine AS (SELECT id, lease_until FROM messages
                          WHERE id = ANY(%(ids)s) AND lease_owner IS NOT NULL
                            AND (%(owner)s::text IS NULL OR lease_owner = %(owner)s)
                          FOR UPDATE),
                 moved AS (UPDATE recipients r SET next_attempt = %(next)s FROM mine
                           WHERE r.message_id = mine.id AND r.state IN {ACTIVE}
                             AND r.next_attempt = mine.lease_until RETURNING r.id),
                 changed AS (UPDATE messages m SET lease_until = %(end)s,
                                    lease_owner = CASE WHEN %(end)s::double precision IS NULL THEN NULL
                                                       ELSE m.lease_owner END
                             FROM mine WHERE m.id = mine.id RETURNING m.id)
            SELECT (SELECT count(*) FROM changed), (SELECT count(*) FROM moved)""",
        {"ids": ids, "owner": owner, "next": next_attempt, "end": new_end},
    )
    row = await cur.fetchone()
    return (0, 0) if row is None else (int(row[0]), int(row[1]))


async def release_unheld(conn: AsyncConnection[Any], owner: str, held: list[str], now: float) -> int:
    """End ``owner``'s leases on messages this process does not hold: claims whose answer was lost.

    A claim can commit while the connection drops before its answer arrives; the messages are
    then leased to a live owner that never heard of them. Returns how many were given back.
    """
    cur = await conn.execute("SELECT id FROM messages WHERE lease_owner = %s AND NOT (id = ANY(%s))",
                             (owner, held))
    ids = [row[0] for row in await cur.fetchall()]
    if not ids:
        return 0
    changed, _ = await move_lease_end(conn, ids, owner, None, now)
    return changed


async def record(conn: AsyncConnection[Any], bodies: BodyStore, message: Message, updates: list[RecipientUpdate],
                 now: float, new_messages: list[tuple[Message, bytes]], attributes: str | None, key: str,
                 node: str) -> bool | None:
    """Persist one attempt's updates, the attributes (``None``: unchanged) and the new messages.

    ``key`` names this record: if a row for it exists, an earlier try committed although its
    connection dropped, and nothing is done again (None is returned). Otherwise returns
    whether the message is finished (no active recipient left): then its body is gone and
    its lease ended.
    """
    cur = await conn.execute("INSERT INTO records (key, time) VALUES (%s, %s) ON CONFLICT DO NOTHING RETURNING key",
                             (key, now))
    if await cur.fetchone() is None:
        return None
    # The message row first, as a claim does: no deadlock with a claim of the same message.
    await conn.execute("SELECT 1 FROM messages WHERE id = %s FOR UPDATE", (message.id,))
    async with conn.cursor() as c:
        await c.executemany(
            "INSERT INTO attempts (time, message_id, sender, recipient, outcome, route, remote_host, remote_addr, "
            "code, enhanced, text, duration, action, node) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
            [(a.time, a.message_id, a.sender, a.recipient, a.outcome, a.route, a.remote_host, a.remote_addr,
              a.code, a.enhanced, a.text, a.duration, a.action, a.node)
             for a in (u.attempt for u in updates)],
        )
    by_address = {r.address: r for r in message.recipients}
    for update in updates:
        recipient = by_address.get(update.recipient)
        if recipient is None:
            continue
        which, key_value = ("id = %s", recipient.id) if recipient.id is not None else ("address = %s",
                                                                                        recipient.address)
        # A recipient already ended (delivered, failed, expired) is never changed again.
        await conn.execute(
            "UPDATE recipients SET state = %s, attempts = attempts + 1, next_attempt = %s, last_reply = %s, "
            f"updated = %s WHERE message_id = %s AND {which} AND state IN {UNFINISHED}",
            (update.state.value, update.next_attempt, update.last_reply, now, message.id, key_value),
        )
    if attributes is not None:
        await conn.execute("UPDATE messages SET attributes = %s WHERE id = %s", (attributes, message.id))
    for new, data in new_messages:
        await insert(conn, bodies, new, data, node)
    cur = await conn.execute(
        f"SELECT count(*) FROM recipients WHERE message_id = %s AND state IN {UNFINISHED}", (message.id,))
    row = await cur.fetchone()
    if row and row[0]:
        return False
    await conn.execute("UPDATE messages SET done_at = %s, lease_owner = NULL, lease_until = NULL WHERE id = %s",
                       (now, message.id))
    await bodies.remove(conn, [message.id])
    return True


async def next_due(conn: AsyncConnection[Any]) -> float | None:
    """The earliest next_attempt of a pending or deferred recipient (the partial index ``recipients_due``)."""
    row = await (await conn.execute(f"SELECT min(next_attempt) FROM recipients WHERE state IN {ACTIVE}")).fetchone()
    return None if row is None else row[0]
