"""``SqliteQueue``: the QueueBackend on one SQLite file (WAL, synchronous=FULL)."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from pathlib import Path
from typing import Any

from mailpipe.core.events import Event
from mailpipe.core.message import Decision, Message, Outcome, Recipient, RecipientResult, RecipientState
from mailpipe.core.queue import (
    Attempt,
    MessageDetail,
    MessageSummary,
    QueueBackend,
    QueueError,
    QueueFull,
    QueueStats,
)

from .schema import create_schema
from .worker import DbWorker

ACTIVE = "('pending', 'deferred')"
INLINE_BODY_LIMIT = 256 * 1024
LEVELS = ("debug", "info", "warning", "error")


def _translate(exc: sqlite3.Error, path: Path) -> QueueError:
    name = getattr(exc, "sqlite_errorname", "")
    if name == "SQLITE_FULL" or "disk is full" in str(exc):
        return QueueFull(f"queue {path}: storage is full ({exc})")
    if name in ("SQLITE_BUSY", "SQLITE_LOCKED") or "locked" in str(exc):
        return QueueError(f"queue {path} is locked by another process ({exc})")
    if name in ("SQLITE_NOTADB", "SQLITE_CORRUPT") or "not a database" in str(exc) or "malformed" in str(exc):
        return QueueError(f"queue {path} is not a usable SQLite database ({exc}); "
                          "move it aside to start afresh")
    return QueueError(f"queue {path}: {exc}")


def owner_alive(owner: str) -> bool:
    """Is the process named by a lease owner (``host:pid:token``) still running?"""
    try:
        host, pid, _ = owner.split(":", 2)
        if host != socket.gethostname():
            return True  # cannot tell: trust the lease time
        os.kill(int(pid), 0)
        return True
    except ProcessLookupError:
        return False
    except (ValueError, PermissionError):
        return True


class SqliteQueue(QueueBackend):
    """The embedded queue. All SQL runs on one worker thread; writes are group-committed."""

    def __init__(self, path: Path, *, busy_timeout: float = 10.0, history_days: float = 30.0) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self.history_seconds = history_days * 86400.0
        self._worker: DbWorker | None = None
        self._finished: set[str] = set()  # ended by record(): release() has nothing to do
        self._stored_attributes: dict[str, str] = {}  # as claimed, so record() rewrites them only if changed

    # -- plumbing -----------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise QueueError(f"queue {self.path}: cannot create its folder: {exc.strerror}") from exc
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                   timeout=self.busy_timeout)
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise QueueError(f"queue {self.path}: cannot switch to WAL journal mode (got {mode})")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = OFF")
            conn.execute("BEGIN IMMEDIATE")
            try:
                create_schema(conn, str(self.path))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return conn
        except sqlite3.Error as exc:
            raise _translate(exc, self.path) from exc

    async def _run(self, fn: Any, *, write: bool = False, durable: bool = True) -> Any:
        if self._worker is None:
            raise QueueError("queue is not open")
        try:
            return await self._worker.submit(fn, write=write, durable=durable)
        except sqlite3.Error as exc:
            raise _translate(exc, self.path) from exc

    async def open(self) -> None:
        worker = DbWorker(self._connect)
        worker.start()
        self._worker = worker

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.stop()
            self._worker = None

    # -- intake ---------------------------------------------------------------------------------

    async def store(self, message: Message, data: bytes) -> None:
        await self._run(lambda conn: _insert(conn, message, data), write=True)

    # -- scheduler ------------------------------------------------------------------------------

    def _message(self, row: sqlite3.Row | tuple[Any, ...], recipients: list[Recipient]) -> Message:
        mid, sender, created, size, mail_options, attributes = row

        async def loader(mid: str = mid) -> bytes:
            return await self.read_body(mid)

        return Message(
            id=mid, sender=sender, recipients=recipients, created=created, size=size,
            mail_options=json.loads(mail_options or "[]"), attributes=json.loads(attributes or "{}"),
            _loader=loader,
        )

    async def claim_due(self, now: float, limit: int, owner: str, lease_until: float) -> list[Message]:
        def job(conn: sqlite3.Connection) -> list[Message]:
            ids: list[str] = []
            rows = conn.execute(
                f"SELECT message_id FROM recipients WHERE state IN {ACTIVE} AND next_attempt <= ? "
                "ORDER BY next_attempt LIMIT ?", (now, limit * 8),
            ).fetchall()
            for (mid,) in rows:
                if mid not in ids:
                    ids.append(mid)
            claimed = []
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
                recips = [
                    Recipient(address=a, state=RecipientState(s), attempts=n, next_attempt=t, last_reply=lr,
                              id=i)
                    for i, a, s, n, t, lr in conn.execute(
                        f"SELECT id, address, state, attempts, next_attempt, last_reply FROM recipients "
                        f"WHERE message_id = ? AND state IN {ACTIVE} AND next_attempt <= ? ORDER BY id",
                        (mid, now),
                    )
                ]
                conn.execute(
                    f"UPDATE recipients SET next_attempt = ? WHERE message_id = ? AND state IN {ACTIVE} "
                    "AND next_attempt <= ?", (lease_until, mid, now),
                )
                row = conn.execute(
                    "SELECT id, sender, created, size, mail_options, attributes FROM messages "
                    "WHERE id = ?", (mid,)
                ).fetchone()
                message = self._message(row, recips)
                self._stored_attributes[mid] = row[5] or "{}"
                if message.size <= INLINE_BODY_LIMIT:
                    # Small bodies come with the claim: one job less per delivery. Larger ones are
                    # read when the deliver step asks, so memory stays bounded by concurrency x limit.
                    body = conn.execute("SELECT data FROM bodies WHERE message_id = ?", (mid,)).fetchone()
                    if body is not None:
                        message._data = bytes(body[0])
                claimed.append(message)
            return claimed

        return await self._run(job, write=True, durable=False)

    async def release(self, message_id: str, owner: str) -> None:
        self._stored_attributes.pop(message_id, None)
        if message_id in self._finished:  # record() ended the message and its lease in one go
            self._finished.discard(message_id)
            return

        def job(conn: sqlite3.Connection) -> None:
            row = conn.execute("SELECT lease_until FROM messages WHERE id = ? AND lease_owner = ?",
                               (message_id, owner)).fetchone()
            if row is None:
                return
            # Recipients claimed but not recorded (cut short by shutdown) are due again at once. The
            # claim set their next_attempt to the lease's end; a recorded deferral has its own time
            # (which may well lie beyond the lease: retry intervals longer than a lease).
            conn.execute(
                f"UPDATE recipients SET next_attempt = ? WHERE message_id = ? AND state IN {ACTIVE} "
                "AND next_attempt = ?", (time.time(), message_id, row[0]),
            )
            conn.execute("UPDATE messages SET lease_owner = NULL, lease_until = NULL WHERE id = ?",
                         (message_id,))

        await self._run(job, write=True, durable=False)

    async def recover(self, owner: str) -> int:
        def job(conn: sqlite3.Connection) -> int:
            now = time.time()
            count = 0
            for mid, lease_owner, until in conn.execute(
                "SELECT id, lease_owner, lease_until FROM messages WHERE lease_owner IS NOT NULL"
            ).fetchall():
                if lease_owner == owner or (until is not None and until > now and owner_alive(lease_owner)):
                    continue
                conn.execute(
                    f"UPDATE recipients SET next_attempt = ? WHERE message_id = ? AND state IN {ACTIVE} "
                    "AND next_attempt = ?", (now, mid, until or 0),
                )
                conn.execute("UPDATE messages SET lease_owner = NULL, lease_until = NULL WHERE id = ?",
                             (mid,))
                count += 1
            return count

        return await self._run(job, write=True, durable=False)

    async def record(
        self, message: Message, results: list[RecipientResult], decisions: dict[str, Decision], now: float,
        new_messages: list[tuple[Message, bytes]] | None = None,
    ) -> None:
        by_addr = {r.address: r for r in message.recipients}

        def job(conn: sqlite3.Connection) -> None:
            for res in results:
                reply = res.reply
                next_attempt: float | None = None
                if res.outcome is Outcome.DELIVERED:
                    state, action = RecipientState.DELIVERED, "delivered"
                else:
                    decision = decisions.get(res.recipient) or Decision.retry(now + 900)
                    if decision.action == "retry":
                        state, action = RecipientState.DEFERRED, "deferred"
                        next_attempt = decision.retry_at or now
                    elif decision.expired:
                        state, action = RecipientState.EXPIRED, "expired"
                    else:
                        state = RecipientState.FAILED
                        action = "bounced" if decision.action == "bounce" and decision.notify else "dropped"
                conn.execute(
                    "INSERT INTO attempts (time, message_id, sender, recipient, outcome, route, remote_host, "
                    "remote_addr, code, enhanced, text, duration, action) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (now, message.id, message.sender, res.recipient, res.outcome.value, res.route,
                     res.remote_host, res.remote_addr, reply.code, reply.enhanced, reply.text, res.duration,
                     action),
                )
                rcpt = by_addr.get(res.recipient)
                if rcpt is None:
                    continue
                # A recipient recorded as delivered (or ended) is never changed again.
                conn.execute(
                    "UPDATE recipients SET state = ?, attempts = attempts + 1, next_attempt = ?, "
                    "last_reply = ?, updated = ? WHERE id = ? AND state IN ('pending', 'deferred', 'held')",
                    (state.value, next_attempt if next_attempt is not None else 0.0, str(reply), now,
                     rcpt.id),
                )
            attributes = json.dumps(message.attributes, default=str)
            if attributes != self._stored_attributes.get(message.id):
                conn.execute("UPDATE messages SET attributes = ? WHERE id = ?", (attributes, message.id))
                self._stored_attributes[message.id] = attributes
            for new, data in new_messages or []:
                _insert(conn, new, data)
            active = conn.execute(
                "SELECT count(*) FROM recipients WHERE message_id = ? "
                "AND state IN ('pending','deferred','held')",
                (message.id,),
            ).fetchone()[0]
            if active == 0:
                conn.execute("UPDATE messages SET done_at = ?, lease_owner = NULL, lease_until = NULL "
                             "WHERE id = ?",
                             (now, message.id))
                conn.execute("DELETE FROM bodies WHERE message_id = ?", (message.id,))
                self._finished.add(message.id)

        await self._run(job, write=True)

    async def next_due(self) -> float | None:
        def job(conn: sqlite3.Connection) -> float | None:
            return conn.execute(
                f"SELECT min(next_attempt) FROM recipients WHERE state IN {ACTIVE}"
            ).fetchone()[0]

        return await self._run(job)

    async def read_body(self, message_id: str) -> bytes:
        def job(conn: sqlite3.Connection) -> bytes:
            row = conn.execute("SELECT data FROM bodies WHERE message_id = ?", (message_id,)).fetchone()
            if row is None:
                raise QueueError(f"message {message_id} has no stored body")
            return bytes(row[0])

        return await self._run(job)

    # -- administration -------------------------------------------------------------------------

    async def get(self, message_id: str) -> MessageDetail | None:
        def job(conn: sqlite3.Connection) -> MessageDetail | None:
            row = conn.execute(
                "SELECT id, sender, created, size, mail_options, attributes, client FROM messages "
                "WHERE id = ?",
                (message_id,),
            ).fetchone()
            if row is None:
                return None
            recips = [
                Recipient(address=a, state=RecipientState(s), attempts=n, next_attempt=t, last_reply=lr, id=i)
                for i, a, s, n, t, lr in conn.execute(
                    "SELECT id, address, state, attempts, next_attempt, last_reply FROM recipients "
                    "WHERE message_id = ? ORDER BY id", (message_id,),
                )
            ]
            attempts = _attempts(conn, "WHERE message_id = ?", [message_id], 10_000)
            return MessageDetail(self._message(row[:6], recips), attempts, json.loads(row[6] or "{}"))

        return await self._run(job)

    async def list(self, *, state: str | None = None, limit: int = 1000) -> list[MessageSummary]:
        def job(conn: sqlite3.Connection) -> list[MessageSummary]:
            if state:
                where = "WHERE m.id IN (SELECT message_id FROM recipients WHERE state = ?)"
                params: list[Any] = [state, limit]
            else:
                where = "WHERE m.done_at IS NULL"
                params = [limit]
            out: dict[str, MessageSummary] = {}
            rows = conn.execute(
                f"SELECT m.id, m.sender, m.created, m.size FROM messages m {where} "
                "ORDER BY m.created LIMIT ?",
                params,
            ).fetchall()
            for mid, sender, created, size in rows:
                out[mid] = MessageSummary(mid, sender, created, size)
            for mid in out:
                for st, n, nxt in conn.execute(
                    "SELECT state, count(*), min(next_attempt) FROM recipients WHERE message_id = ? "
                    "GROUP BY state",
                    (mid,),
                ):
                    out[mid].recipients[st] = n
                    if st in ("pending", "deferred"):
                        cur = out[mid].next_attempt
                        out[mid].next_attempt = nxt if cur is None else min(cur, nxt)
            return list(out.values())

        return await self._run(job)

    async def _update(self, sql: str, ids: list[str] | None, params: list[Any]) -> int:
        def job(conn: sqlite3.Connection) -> int:
            if ids is None:
                return conn.execute(sql.replace("{ids}", "1"), params).rowcount
            total = 0
            for mid in ids:
                total += conn.execute(sql.replace("{ids}", "message_id = ?"), [*params, mid]).rowcount
            return total

        return await self._run(job, write=True)

    async def retry_now(self, message_ids: list[str] | None, now: float) -> int:
        return await self._update(
            f"UPDATE recipients SET next_attempt = ? WHERE state IN {ACTIVE} AND {{ids}} AND message_id IN "
            "(SELECT id FROM messages WHERE lease_owner IS NULL)", message_ids, [now],
        )

    async def hold(self, message_ids: list[str]) -> int:
        return await self._update(
            f"UPDATE recipients SET state = 'held' WHERE state IN {ACTIVE} AND {{ids}}", message_ids, [],
        )

    async def release_hold(self, message_ids: list[str], now: float) -> int:
        return await self._update(
            "UPDATE recipients SET state = CASE WHEN attempts = 0 THEN 'pending' ELSE 'deferred' END, "
            "next_attempt = ? WHERE state = 'held' AND {ids}", message_ids, [now],
        )

    async def delete(self, message_ids: list[str]) -> int:
        def job(conn: sqlite3.Connection) -> int:
            count = 0
            for mid in message_ids:
                count += conn.execute("DELETE FROM messages WHERE id = ?", (mid,)).rowcount
                conn.execute("DELETE FROM recipients WHERE message_id = ?", (mid,))
                conn.execute("DELETE FROM bodies WHERE message_id = ?", (mid,))
            return count

        return await self._run(job, write=True)

    # -- logs -----------------------------------------------------------------------------------

    def add_event(self, event: Event) -> None:
        if self._worker is None:
            return
        row = (event.time, event.kind, event.level, event.text, json.dumps(event.data, default=str))
        self._worker.submit_nowait(
            lambda conn: conn.execute(
                "INSERT INTO events (time, kind, level, text, data) VALUES (?,?,?,?,?)", row)
        )

    async def events(self, *, since: float | None = None, limit: int = 200, kind: str | None = None,
                     level: str | None = None) -> list[Event]:
        where, params = ["time >= ?"], [since or 0]
        if kind:
            where.append("(kind = ? OR kind LIKE ? ESCAPE '\\')")
            params += [kind, kind.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + ".%"]
        if level:
            shown = LEVELS[LEVELS.index(level):] if level in LEVELS else (level,)
            where.append(f"level IN ({','.join('?' * len(shown))})")
            params += list(shown)

        def job(conn: sqlite3.Connection) -> list[Event]:
            rows = conn.execute(
                f"SELECT time, kind, level, text, data FROM events WHERE {' AND '.join(where)} "
                "ORDER BY id DESC LIMIT ?", [*params, limit],
            ).fetchall()
            return [Event(t, k, x, lv, json.loads(d or "{}")) for t, k, lv, x, d in reversed(rows)]

        return await self._run(job)

    async def attempts(self, *, limit: int = 200, **filters: Any) -> list[Attempt]:
        clauses, params = [], []
        for key, column in (("message", "message_id"), ("sender", "sender"), ("recipient", "recipient")):
            if filters.get(key) is not None:
                clauses.append(f"{column} = ? COLLATE NOCASE")
                params.append(filters[key])
        if filters.get("outcome"):
            clauses.append("(outcome = ? OR action = ?)")
            params += [filters["outcome"], filters["outcome"]]
        if filters.get("since") is not None:
            clauses.append("time >= ?")
            params.append(filters["since"])
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        return await self._run(lambda conn: _attempts(conn, where, params, limit))

    async def stats(self, *, since: float, now: float) -> QueueStats:
        def job(conn: sqlite3.Connection) -> QueueStats:
            st = QueueStats(since, now)
            for action, n in conn.execute(
                "SELECT coalesce(action, outcome), count(*) FROM attempts WHERE time >= ? AND time <= ? "
                "GROUP BY 1", (since, now),
            ):
                st.outcomes[action] = n
            st.received, st.notifications = conn.execute(
                "SELECT count(*), coalesce(sum(sender = ''), 0) FROM messages "
                "WHERE created >= ? AND created <= ?",
                (since, now),
            ).fetchone()
            st.queue_depth, st.oldest = conn.execute(
                "SELECT count(*), min(created) FROM messages WHERE done_at IS NULL"
            ).fetchone()
            for state, n in conn.execute(
                "SELECT state, count(*) FROM recipients WHERE message_id IN "
                "(SELECT id FROM messages WHERE done_at IS NULL) GROUP BY state"
            ):
                st.recipients[state] = n
            st.next_attempt = conn.execute(
                f"SELECT min(next_attempt) FROM recipients WHERE state IN {ACTIVE}"
            ).fetchone()[0]
            return st

        return await self._run(job)

    async def prune(self, now: float) -> dict[str, int]:
        """Delete attempts, events and finished messages older than ``history_days``."""
        cutoff = now - self.history_seconds

        def job(conn: sqlite3.Connection) -> dict[str, int]:
            out = {
                "attempts": conn.execute("DELETE FROM attempts WHERE time < ?", (cutoff,)).rowcount,
                "events": conn.execute("DELETE FROM events WHERE time < ?", (cutoff,)).rowcount,
            }
            old = [mid for (mid,) in conn.execute(
                "SELECT id FROM messages WHERE done_at IS NOT NULL AND done_at < ?", (cutoff,))]
            for mid in old:
                conn.execute("DELETE FROM recipients WHERE message_id = ?", (mid,))
                conn.execute("DELETE FROM bodies WHERE message_id = ?", (mid,))
                conn.execute("DELETE FROM messages WHERE id = ?", (mid,))
            out["messages"] = len(old)
            return out

        return await self._run(job, write=True, durable=False)


def _attempts(conn: sqlite3.Connection, where: str, params: list[Any], limit: int) -> list[Attempt]:
    rows = conn.execute(
        "SELECT time, message_id, recipient, outcome, route, remote_host, remote_addr, code, enhanced, text, "
        f"duration, sender, coalesce(action, '') FROM attempts {where} ORDER BY id DESC LIMIT ?",
        [*params, limit],
    ).fetchall()
    return [Attempt(*r) for r in reversed(rows)]


def _insert(conn: sqlite3.Connection, message: Message, data: bytes) -> None:
    """Insert a new message, its body and its recipients (pending, due at arrival)."""
    client = json.dumps(message.session.__dict__ if message.session else {})
    conn.execute(
        "INSERT INTO messages (id, sender, created, size, client, mail_options, attributes) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (message.id, message.sender, message.created, len(data), client,
         json.dumps(message.mail_options), json.dumps(message.attributes, default=str)),
    )
    conn.execute("INSERT INTO bodies (message_id, data) VALUES (?, ?)", (message.id, data))
    conn.executemany(
        "INSERT INTO recipients (message_id, address, state, attempts, next_attempt, updated) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [(message.id, r.address, RecipientState.PENDING.value, 0, message.created, message.created)
         for r in message.recipients],
    )
