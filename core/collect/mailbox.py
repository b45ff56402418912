"""One collection of one mailbox: list it, fetch what is new, queue it through ``admit``, delete what is safe.

The order of things is the promise:

1. ``UIDL``/``LIST``; the marks of the messages already collected are read from the queue
   (``CollectionLedger``); marks of messages no longer on the server are dropped.
2. Each new message is fetched (``RETR``) and handed to the intake's ``admit`` (every
   ``accept`` stage, a ``Received:`` field naming the POP3 server and the mailbox, an
   ``X-Loop`` mark), whose commit stores the message *and* its mark in one transaction.
3. Only then is it marked for deletion (``DELE``; with ``leave_on_server`` only once it is
   older than ``delete_after``). The server deletes at ``QUIT``. A crash anywhere leaves
   either a message that is not queued (fetched again next time) or a message that is
   queued and marked (only deleted next time): no loss and no second copy.

A message larger than ``max_size`` stays on the server (one ``collect.too_large`` event);
one whose header cannot be parsed is queued as it is, for ``deliver_to`` or ``default``;
one that looks like a loop is queued *held* (``collect.loop``) for an administrator; one
an ``accept`` stage refuses for good is marked and removed (``collect.refused``); one it
refuses for now stays for the next run. A server without ``UIDL`` is served by content
hashes (``sha256:...``), which needs ``leave_on_server: false``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..events import Events
from ..ids import new_queue_id
from ..intake.admit import admit
from ..intake.normalise import normalise_line_ends
from ..intake.received import collected_header
from ..intake.services import IntakeServices
from ..message import Message, Recipient, RecipientState, SessionInfo
from ..pop3 import Listed, Pop3Client, Pop3Error, Pop3TooLarge, TokenProvider, endpoint, open_mailbox
from ..queue import CollectionLedger
from ..settings import Account, CollectSettings
from . import distribute

log = logging.getLogger("mailpipe.collect")

SLACK = 64 * 1024  # a RETR may be a little longer than LIST said (line ends); more is too large
HASH_MARKS_KEPT = 7 * 86400.0  # marks by content hash (servers without UIDL) are dropped after this long


def source_of(account: Account) -> str:
    """The name of one mailbox in the marks and events: ``username@server:port``."""
    assert account.pop3 is not None
    return f"{account.username}@{endpoint(account.pop3)}"


@dataclass
class Row:
    """One message of the mailbox and what this run did (or, dry, would do) with it."""

    number: int
    uidl: str | None
    size: int
    action: str  # collect, collected, known, delete, too_large, refused, deferred
    sender: str = ""
    recipients: list[str] = field(default_factory=list)
    summary: dict[str, str] = field(default_factory=dict)
    queue_id: str = ""
    note: str = ""


@dataclass
class RunReport:
    """What one collection of one mailbox did; ``error`` (and ``error_kind``) when it failed part-way."""

    account: str
    source: str
    started: float
    finished: float = 0.0
    dry_run: bool = False
    on_server: int = 0
    collected: list[str] = field(default_factory=list)
    deleted: int = 0
    kept: int = 0
    too_large: int = 0
    refused: int = 0
    deferred: int = 0
    rows: list[Row] = field(default_factory=list)
    error: str | None = None
    error_kind: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """For ``pipeline collect --json``."""
        return {
            "account": self.account, "source": self.source, "dry_run": self.dry_run, "on_server": self.on_server,
            "collected": self.collected, "deleted": self.deleted, "kept": self.kept, "too_large": self.too_large,
            "refused": self.refused, "deferred": self.deferred, "error": self.error,
            "messages": [r.__dict__ for r in self.rows],
        }


@dataclass
class Collection:
    """What a collection needs: the intake's services (queue, runtime, events, clock), the ledger, paths, tokens.

    ``reported`` remembers the messages already reported as too large, so each is reported once.
    """

    intake: IntakeServices
    ledger: CollectionLedger
    resolve: Callable[[Path], Path] = lambda p: p
    tokens: TokenProvider | None = None
    reported: set[str] = field(default_factory=set)


class MailboxRun:
    """One collection of ``account`` (its ``collect`` settings as they are now); ``await run()``."""

    def __init__(self, collection: Collection, account: Account, *, dry_run: bool = False) -> None:
        assert account.collect is not None and account.pop3 is not None
        self.c = collection
        self.account = account
        self.collect: CollectSettings = account.collect
        self.source = source_of(account)
        self.dry_run = dry_run
        self.report = RunReport(account.address, self.source, collection.intake.clock.now(), dry_run=dry_run)

    @property
    def events(self) -> Events:
        """The gateway's event emitter."""
        return self.c.intake.events

    async def run(self) -> RunReport:
        """Collect once. POP3 failures (login, connection, TLS, a drop mid-way) end the run with ``report.error``;
        whatever was queued before stays queued (and is deleted from the server next time)."""
        settings = self.c.intake.runtimes.current.settings
        client: Pop3Client | None = None
        try:
            client = await open_mailbox(self.account, timeout=settings.delivery.timeout, resolve=self.c.resolve,
                                        tokens=self.c.tokens)
            deletions = await self._walk(client)
            if self.dry_run:
                client.close()
            else:
                await client.quit()  # the server deletes the messages marked with DELE now
                self.report.deleted = deletions
        except Pop3Error as exc:
            self.report.error, self.report.error_kind = str(exc), exc.kind
            if client is not None:
                client.close()
        except BaseException:
            if client is not None:
                client.close()
            raise
        self.report.finished = self.c.intake.clock.now()
        return self.report

    async def _walk(self, client: Pop3Client) -> int:
        listing = await client.listing()
        self.report.on_server = len(listing)
        if self.collect.leave_on_server and any(e.uidl is None for e in listing):
            raise Pop3Error(f"{self.source} has no UIDL: leave_on_server needs it to know what was collected",
                            kind="protocol", step="UIDL")
        marks = await self.c.ledger.collected(self.source)
        await self._forget(listing, marks)
        deletions = 0
        for entry in listing:
            if await self._one(client, entry, marks):
                deletions += 1
        return deletions

    async def _forget(self, listing: list[Listed], marks: dict[str, float]) -> None:
        """Drop the marks of messages gone from the server (and old content-hash marks)."""
        if self.dry_run:
            return
        present = {e.uidl for e in listing if e.uidl is not None}
        now = self.c.intake.clock.now()
        gone = [u for u, t in marks.items()
                if (now - t > HASH_MARKS_KEPT if u.startswith("sha256:") else u not in present)]
        if gone:
            await self.c.ledger.forget_collected(self.source, gone)
            for uidl in gone:
                marks.pop(uidl, None)

    def _delete_due(self, marked_at: float) -> bool:
        if not self.collect.leave_on_server:
            return True
        after = self.collect.delete_after
        return after is not None and self.c.intake.clock.now() - marked_at >= after

    async def _one(self, client: Pop3Client, entry: Listed, marks: dict[str, float]) -> bool:
        """Deal with one listed message; True when it was marked for deletion (DELE)."""
        if entry.uidl is not None and entry.uidl in marks:
            return await self._known(client, entry, marks[entry.uidl])
        if entry.size > self.collect.max_size:
            self._too_large(entry)
            return False
        if self.dry_run:
            await self._preview(client, entry)
            return False
        try:
            data = await client.retrieve(entry.number, limit=max(entry.size, self.collect.max_size) + SLACK)
        except Pop3TooLarge:  # LIST said less than it is: read to the end and dropped, the session goes on
            self._too_large(entry)
            return False
        ident = entry.uidl or "sha256:" + hashlib.sha256(data).hexdigest()
        if ident in marks:
            return await self._known(client, entry, marks[ident])
        row = await self._take(client, data, ident, entry)
        self.report.rows.append(row)
        if row.action in ("collected", "refused") and self._delete_due(self.c.intake.clock.now()):
            await client.delete(entry.number)
            return True
        return False

    async def _known(self, client: Pop3Client, entry: Listed, marked_at: float) -> bool:
        if self._delete_due(marked_at):
            if not self.dry_run:
                await client.delete(entry.number)
            self.report.rows.append(Row(entry.number, entry.uidl, entry.size, "delete"))
            return True
        self.report.kept += 1
        self.report.rows.append(Row(entry.number, entry.uidl, entry.size, "known"))
        return False

    def _too_large(self, entry: Listed) -> None:
        self.report.too_large += 1
        self.report.rows.append(Row(entry.number, entry.uidl, entry.size, "too_large"))
        key = f"{self.source} {entry.uidl or entry.number}"
        if self.dry_run or key in self.c.reported:
            return
        self.c.reported.add(key)
        self.events.emit("collect.too_large",
                         f"{self.account.address}: message {entry.number} ({entry.size} bytes) is larger than "
                         f"max_size ({self.collect.max_size} bytes); it stays on the server",
                         level="warning", account=self.account.address, uidl=entry.uidl, size=entry.size)

    async def _preview(self, client: Pop3Client, entry: Listed) -> None:
        """Dry run: what collecting this message would do, from its header (TOP) when the server has TOP."""
        row = Row(entry.number, entry.uidl, entry.size, "collect")
        try:
            header = distribute.read_header(await client.top(entry.number, 0))
        except Pop3Error as exc:
            if exc.kind != "protocol" or "the server said" not in str(exc):
                raise
            header = None
            row.note = "the server has no TOP: recipients not known before fetching"
        row.sender = distribute.envelope_sender(header)
        row.recipients = distribute.recipients(self.collect, header)
        row.summary = distribute.summary(header)
        self.report.rows.append(row)

    async def _take(self, client: Pop3Client, data: bytes, ident: str, entry: Listed) -> Row:
        """Queue one fetched message through ``admit`` (its commit writes the mark too)."""
        intake = self.c.intake
        runtime = intake.runtimes.current
        now = intake.clock.now()
        data = normalise_line_ends(data)
        header = distribute.read_header(data)
        loop = distribute.loop_reason(header, mailbox=self.account.address, hostname=runtime.settings.hostname,
                                      max_hops=self.collect.max_hops)
        rcpts = distribute.recipients(self.collect, header)
        state = RecipientState.HELD if loop else RecipientState.PENDING
        queue_id = new_queue_id(now)
        pop = self.account.pop3
        assert pop is not None
        message = Message(
            id=queue_id, sender=distribute.envelope_sender(header),
            recipients=[Recipient(address=r, state=state) for r in rcpts], created=now,
            session=SessionInfo(peer=client.peer, helo=pop.server, tls=client.tls, may_relay=True,
                                listener=f"pop3:{self.account.address}"),
            attributes={"collected": {"mailbox": self.account.address, "uidl": ident}},
        )
        trace = collected_header(server=pop.server, addr=client.peer, tls=client.tls, mailbox=self.account.address,
                                 hostname=runtime.settings.hostname, queue_id=queue_id, recipients=rcpts, now=now)
        trace += f"X-Loop: {self.account.address}\r\n".encode()

        async def commit(m: Message, stored: bytes) -> bool:
            """``admit``'s commit: the message and its mark in one transaction (False: marked before)."""
            return await self.c.ledger.store_collected(m, stored, self.source, ident, now)

        admission = await admit(intake, runtime, message, data, trace, commit)
        row = Row(entry.number, entry.uidl, len(data), "collected", message.sender, rcpts,
                  distribute.summary(header), queue_id)
        where = f"{self.account.address}: message {entry.number}"
        if admission.reply.code < 400:
            if admission.stored:
                self._collected(row, header is None, loop)
            return row
        if admission.reply.permanent:
            await self.c.ledger.mark_collected(self.source, ident, now, note=str(admission.reply))
            self.report.refused += 1
            row.action, row.note, row.queue_id = "refused", str(admission.reply), ""
            self.events.emit("collect.refused", f"{where} refused by the policy stages ({admission.reply}); "
                             "it is not queued and is removed from the server" if not self.collect.leave_on_server
                             else f"{where} refused by the policy stages ({admission.reply}); it is not queued",
                             level="warning", account=self.account.address, uidl=ident, reply=str(admission.reply),
                             **row.summary)
            return row
        self.report.deferred += 1
        row.action, row.note, row.queue_id = "deferred", str(admission.reply), ""
        log.info("%s not queued now (%s); it stays on the server for the next run", where, admission.reply)
        if admission.queue_failed:
            raise Pop3Error(f"the queue cannot take mail now ({admission.reply}); collection paused", kind="queue",
                            step=f"RETR {entry.number}")
        return row

    def _collected(self, row: Row, unparseable: bool, loop: str | None) -> None:
        self.report.collected.append(row.queue_id)
        address = self.account.address
        self.events.emit("collect.message", f"{address}: collected message {row.number} ({row.size} bytes) as "
                         f"{row.queue_id} for {', '.join(row.recipients)}", account=address, message=row.queue_id,
                         size=row.size, uidl=row.uidl, recipients=row.recipients)
        if unparseable:
            self.events.emit("collect.unparseable", f"{address}: the header of message {row.number} cannot be "
                             f"parsed; queued as it is ({row.queue_id}) for {', '.join(row.recipients)}",
                             level="warning", account=address, message=row.queue_id)
        if loop:
            self.events.emit("collect.loop", f"{address}: message {row.number} looks like a mail loop ({loop}); "
                             f"queued held as {row.queue_id}: release or delete it (`pipeline queue`)",
                             level="warning", account=address, message=row.queue_id)
