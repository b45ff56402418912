"""``pipeline queue migrate --to TARGET``: move a stopped queue's mail and history to another queue backend.

The site grows from one node on SQLite to nodes on PostgreSQL (or goes back) without losing
the mail waiting in its queue::

    pipeline queue migrate -c old.yaml --to new.yaml [--merge] [--dry-run] [--json]

Both queues are opened alone (no chain plugin is built). The command refuses, before it
writes anything, when either backend lacks the ``QueueTransfer`` face, when a gateway serves
either configuration (its control socket answers, or the backend sees live lease owners),
when both name the same store, and when the target holds messages of its own (not copied
from this source by an earlier run) unless ``--merge``. It then copies every message
(finished ones too; bodies read and written a batch at a time, never all at once), the
message log and the event log, in batches of one transaction each, and checks the counts:
the export saw everything the source holds, the target grew by exactly what was stored, and
what was stored plus what was already there is everything exported. Leases are not copied:
mail arrives unleased, due when it was due. The source is never changed. A run that was
interrupted is simply run again: what is already in the target is skipped.
"""

from __future__ import annotations

import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from .options import config_option, json_option, load
from .output import echo_json
from .runner import run

if TYPE_CHECKING:
    from ..config import LoadedConfig
    from ..events import Event
    from ..queue import Attempt, MessageRecord, QueueBackend, QueueTransfer, TransferCounts

T = TypeVar("T")

BATCH_MESSAGES = 200  # messages per transaction ...
BATCH_BYTES = 8 * 1024 * 1024  # ... or fewer, so that a batch's bodies stay under this many bytes in memory
BATCH_LINES = 1000  # attempts or events per transaction


@dataclass
class Copied:
    """What one kind of item came to: how many the source exported, the target stored, and were there already."""

    exported: int = 0
    stored: int = 0
    skipped: int = 0


@dataclass
class MigrationReport:
    """The outcome of ``pipeline queue migrate``, as the command prints it (``--json``: this, as a dict)."""

    source: str
    target: str
    dry_run: bool
    merge: bool
    source_counts: TransferCounts
    target_before: TransferCounts
    target_after: TransferCounts | None = None
    foreign: int = 0  # messages the target held that the source does not
    messages: Copied = field(default_factory=Copied)
    attempts: Copied = field(default_factory=Copied)
    events: Copied = field(default_factory=Copied)
    problems: list[str] = field(default_factory=list)

    @property
    def verified(self) -> bool:
        """The counts check found nothing amiss (a dry run checks nothing)."""
        return not self.dry_run and not self.problems


# -- refusals ---------------------------------------------------------------------------------------


def serving(state_dir: Path) -> bool:
    """Whether a ``pipeline serve`` has the control socket of ``state_dir`` bound (asks it nothing)."""
    from ..control import socket_path

    path = socket_path(state_dir)
    if not path.exists():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False  # left behind by a server that stopped
    return True


def refuse(text: str) -> NoReturn:
    """Stop the command with ``error: <text>`` (exit status 1), nothing written."""
    from ..queue import QueueError

    raise QueueError(f"{text}; nothing was copied")


def transfer_face(queue: QueueBackend, config: LoadedConfig, role: str) -> QueueTransfer:
    """``queue`` as a ``QueueTransfer``, or a refusal naming the backend that cannot move mail."""
    from ..queue import QueueTransfer

    if not isinstance(queue, QueueTransfer):
        refuse(f"the {role}'s queue backend {config.queue.name!r} ({config.source}) cannot "
               f"{'export' if role == 'source' else 'import'} messages (it has no transfer face)")
    return queue


def refuse_if_serving(config: LoadedConfig, role: str) -> None:
    """Refuse while a gateway serves ``config``: the control socket in its state folder answers."""
    if serving(config.settings.state_dir):
        refuse(f"a gateway is serving the {role} ({config.source}: its control socket in "
               f"{config.settings.state_dir} answers); stop it first")


async def refuse_if_used(queue: QueueTransfer, role: str, now: float) -> None:
    """Refuse while the backend sees lease owners that may be alive (other nodes on a shared queue)."""
    owners = await queue.active_owners(now)
    if owners:
        refuse(f"the {role} queue {queue.location} is in use by " + "; ".join(owners)
               + ": stop every node using it (a node stopped just now counts as alive until its lease runs out)")


# -- counting -----------------------------------------------------------------------------------------


def count_record(counts: TransferCounts, record: MessageRecord) -> None:
    """Add one message to ``counts`` the way a backend's ``transfer_counts`` counts it."""
    counts.messages += 1
    counts.queued += record.done_at is None
    for recipient in record.recipients:
        counts.recipients[recipient.state.value] = counts.recipients.get(recipient.state.value, 0) + 1
    if record.body is not None:
        counts.bodies += 1
        counts.body_bytes += len(record.body)


def plus(a: TransferCounts, b: TransferCounts) -> TransferCounts:
    """``a`` and ``b`` added up."""
    from ..queue import TransferCounts

    return TransferCounts(a.messages + b.messages, a.queued + b.queued,
                          dict(Counter(a.recipients) + Counter(b.recipients)), a.attempts + b.attempts,
                          a.events + b.events, a.bodies + b.bodies, a.body_bytes + b.body_bytes)


def differences(what: str, want: TransferCounts, got: TransferCounts) -> list[str]:
    """One line per count that differs between ``want`` and ``got``."""
    wanted, found = asdict(want), asdict(got)
    for counts in (wanted, found):
        counts["recipients"] = {k: v for k, v in counts["recipients"].items() if v}
    return [f"{what}: {key} {found[key]}, expected {wanted[key]}" for key in wanted if wanted[key] != found[key]]


# -- copying ------------------------------------------------------------------------------------------


async def in_batches(items: AsyncIterator[T], store: Callable[[list[T]], Awaitable[Any]], *, size: int,
                     weight: Callable[[T], int] | None = None, limit: int = 0) -> None:
    """Hand ``items`` to ``store`` in lists of at most ``size`` (and at most ``limit`` by ``weight``)."""
    batch: list[T] = []
    load_ = 0
    async for item in items:
        if batch and (len(batch) >= size or (weight is not None and load_ + weight(item) > limit)):
            await store(batch)
            batch, load_ = [], 0
        batch.append(item)
        load_ += weight(item) if weight is not None else 0
    if batch:
        await store(batch)


async def copy_messages(source: QueueTransfer, target: QueueTransfer, report: MigrationReport, node: str,
                        now: float, exported: TransferCounts, stored: TransferCounts) -> None:
    """Every message of the source into the target, counted as exported and (if the target took it) stored."""

    async def records() -> AsyncIterator[MessageRecord]:
        async for record in source.export_messages(now):
            record.node = record.node or node
            report.messages.exported += 1
            count_record(exported, record)
            yield record

    async def store(batch: list[MessageRecord]) -> None:
        taken = set(await target.import_messages(batch))
        for record in batch:
            if record.id in taken:
                count_record(stored, record)
        report.messages.stored += len(taken)
        report.messages.skipped += len(batch) - len(taken)

    await in_batches(records(), store, size=BATCH_MESSAGES, limit=BATCH_BYTES,
                     weight=lambda r: len(r.body or b""))


async def copy_lines(lines: AsyncIterator[Attempt] | AsyncIterator[Event],
                     store: Callable[[list[Any]], Awaitable[int]], copied: Copied, node: str) -> None:
    """Every attempt (or event) into the target through ``store``, ``node`` filled in where none is named."""
    from dataclasses import replace

    async def named() -> AsyncIterator[Any]:
        async for line in lines:
            copied.exported += 1
            yield line if line.node else replace(line, node=node)

    async def batch_store(batch: list[Any]) -> None:
        taken = await store(batch)
        copied.stored += taken
        copied.skipped += len(batch) - taken

    await in_batches(named(), batch_store, size=BATCH_LINES)


def check(report: MigrationReport, exported: TransferCounts, stored: TransferCounts) -> None:
    """The counts check: note every way in which the target does not hold what the source does."""
    assert report.target_after is not None
    report.problems += differences("exported from the source", report.source_counts, exported)
    report.problems += differences("target", plus(report.target_before, stored), report.target_after)
    for name in ("messages", "attempts", "events"):
        copied: Copied = getattr(report, name)
        if copied.stored + copied.skipped != copied.exported:
            report.problems.append(f"{name}: {copied.exported} exported, but {copied.stored} stored and "
                                   f"{copied.skipped} already there")


# -- the whole run -----------------------------------------------------------------------------------------


async def migrate_queue(source_config: LoadedConfig, target_config: LoadedConfig, *, merge: bool,
                        dry_run: bool) -> MigrationReport:
    """Check, copy and verify; the report. Refusals raise ``QueueError`` before anything is written."""
    from ..events import Event
    from ..queue import QueueError, TransferCounts
    from ..runtime import open_queue

    now = time.time()
    refuse_if_serving(source_config, "source")
    refuse_if_serving(target_config, "target")
    source_queue = await open_queue(source_config)
    try:
        source = transfer_face(source_queue, source_config, "source")
        await refuse_if_used(source, "source", now)
        target_queue = await open_queue(target_config)
        try:
            target = transfer_face(target_queue, target_config, "target")
            await refuse_if_used(target, "target", now)
            if source.location == target.location:
                refuse(f"source and target are the same queue ({source.location})")
            report = MigrationReport(source.location, target.location, dry_run, merge,
                                     await source.transfer_counts(), await target.transfer_counts())
            async for page in target.message_ids():
                report.foreign += len(page) - len(await source.known_messages(page))
            if report.foreign and not merge:
                refuse(f"the target queue {target.location} holds {report.foreign} message(s) that are not in "
                       f"the source; add the source's mail to them with --merge")
            if dry_run:
                return report
            exported, stored = TransferCounts(), TransferCounts()
            node = source_config.settings.hostname
            try:
                await copy_messages(source, target, report, node, now, exported, stored)
                await copy_lines(source.export_attempts(), target.import_attempts, report.attempts, node)
                await copy_lines(source.export_events(), target.import_events, report.events, node)
            except QueueError as exc:
                raise QueueError(f"{exc}; the migration stopped half-way: run the same command again to "
                                 "continue (what the target already holds is skipped)") from exc
            exported.attempts, exported.events = report.attempts.exported, report.events.exported
            stored.attempts, stored.events = report.attempts.stored, report.events.stored
            report.target_after = await target.transfer_counts()
            check(report, exported, stored)
            if report.verified and (report.messages.stored or report.attempts.stored or report.events.stored):
                await target.import_events([Event(
                    time.time(), "queue.migrated",
                    f"{report.messages.stored} message(s), {report.attempts.stored} attempt(s) and "
                    f"{report.events.stored} event(s) copied from {source.location}", "info",
                    {"source": source.location, "messages": report.messages.stored}, target_config.settings.hostname,
                )])
            return report
        finally:
            await target_queue.close()
    finally:
        await source_queue.close()


# -- the command --------------------------------------------------------------------------------------------


def _line(counts: TransferCounts) -> str:
    """``12 messages (3 queued; 10 delivered, 4 deferred recipients), 30 attempts, 51 events, 3 bodies (12 KB)``."""
    states = ", ".join(f"{n} {s}" for s, n in sorted(counts.recipients.items()) if n)
    return (f"{counts.messages} message(s) ({counts.queued} queued; recipients: {states or 'none'}), "
            f"{counts.attempts} attempt(s), {counts.events} event(s), {counts.bodies} bodies "
            f"({counts.body_bytes} bytes)")


def _print(report: MigrationReport) -> None:
    """The report for people."""
    click.echo(f"source: {report.source}")
    click.echo(f"  holds {_line(report.source_counts)}")
    click.echo(f"target: {report.target}")
    click.echo(f"  held {_line(report.target_before)}" + (f", {report.foreign} of them not from the source"
                                                           if report.foreign else ""))
    if report.dry_run:
        click.echo("dry run: nothing copied")
        return
    for name in ("messages", "attempts", "events"):
        copied: Copied = getattr(report, name)
        click.echo(f"copied {copied.stored} of {copied.exported} {name}"
                   + (f" ({copied.skipped} already in the target)" if copied.skipped else ""))
    assert report.target_after is not None
    click.echo(f"target now holds {_line(report.target_after)}")
    if report.verified:
        click.echo("verified: the target holds everything the source holds; the source is unchanged "
                   "(remove it once you have checked the target)")
    for problem in report.problems:
        click.echo(f"error: {problem}", err=True)


@click.command("migrate")
@config_option
@click.option("--to", "target_file", required=True, metavar="FILE",
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="the configuration whose queue receives the mail (e.g. a node on PostgreSQL)")
@click.option("--merge", is_flag=True, help="also when the target holds mail of its own")
@click.option("--dry-run", is_flag=True, help="check and count only; copy nothing")
@json_option
@click.pass_context
def migrate(ctx: click.Context, target_file: Path, merge: bool, dry_run: bool, as_json: bool) -> None:
    """Copy a stopped gateway's queue (mail, message log, event log) into the queue of another configuration.

    The source (-c) is left as it was. Stop every gateway using either queue first. An
    interrupted run is continued by running it again. Exit status 1 when it refused or when
    the counts do not match after copying.
    """
    from ..config import load_config
    from ..errors import ConfigError

    source = load(ctx)
    try:
        target = load_config(target_file)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        ctx.exit(2)
    report = run(migrate_queue(source, target, merge=merge, dry_run=dry_run))
    if as_json:
        echo_json({**asdict(report), "verified": report.verified})
    else:
        _print(report)
    if report.problems:
        ctx.exit(1)
