"""``pipeline queue list|show|retry|delete|hold|release``: look at and act on queued messages.

Each opens the configuration's queue backend alone (``runner.with_queue``): no chain plugin
is built, so they work while ``pipeline serve`` runs and when a chain plugin could not start.
``retry`` and ``release`` then poke a running server (``<state_dir>/control.sock``) so that
it starts a delivery run at once.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import TYPE_CHECKING

import click

from .options import config_option, json_option, load
from .output import echo_json, timestamp
from .runner import with_queue

if TYPE_CHECKING:
    from ..queue import QueueBackend

STATES = ["pending", "deferred", "held", "delivered", "failed", "expired"]

IdsAction = Callable[["QueueBackend", list[str] | None], Awaitable[int]]
"""Act on the named messages (None: ``--all``); returns how many recipients (or messages) changed."""


@click.group()
@config_option
def queue() -> None:
    """Look at and act on queued messages."""


@queue.command("list")
@config_option
@click.option("--state", type=click.Choice(STATES),
              help="messages with a recipient in this state (default: every message still queued)")
@json_option
@click.pass_context
def queue_list(ctx: click.Context, state: str | None, as_json: bool) -> None:
    """Messages in the queue, oldest first."""
    rows = with_queue(load(ctx), lambda q: q.list(state=state))
    if as_json:
        echo_json([asdict(r) for r in rows])
        return
    if not rows:
        click.echo("queue is empty")
        return
    click.echo(f"{'ID':20} {'ARRIVED (UTC)':19} {'SIZE':>8}  {'NEXT ATTEMPT':19}  SENDER / RECIPIENTS")
    for r in rows:
        states = ", ".join(f"{n} {s}" for s, n in sorted(r.recipients.items()))
        click.echo(f"{r.id:20} {timestamp(r.created):19} {r.size:>8}  {timestamp(r.next_attempt):19}  "
                   f"<{r.sender}> ({states})")


@queue.command("show")
@config_option
@click.argument("message_id")
@json_option
@click.pass_context
def queue_show(ctx: click.Context, message_id: str, as_json: bool) -> None:
    """One message: its recipients and their states, and the history of every attempt."""
    detail = with_queue(load(ctx), lambda q: q.get(message_id))
    if detail is None:
        click.echo(f"error: no message {message_id} in the queue", err=True)
        ctx.exit(1)
    m = detail.message
    if as_json:
        echo_json({
            "id": m.id, "sender": m.sender, "created": m.created, "size": m.size, "client": detail.client,
            "recipients": [{"address": r.address, "state": r.state.value, "attempts": r.attempts,
                            "next_attempt": r.next_attempt or None, "last_reply": r.last_reply}
                           for r in m.recipients],
            "attempts": [asdict(a) for a in detail.attempts], "held": m.held,
        })
        return
    click.echo(f"message {m.id}")
    click.echo(f"  from:     <{m.sender}>")
    click.echo(f"  arrived:  {timestamp(m.created)} UTC from {detail.client.get('peer', '?')}"
               f" (helo {detail.client.get('helo')})")
    click.echo(f"  size:     {m.size} bytes")
    if m.held:
        click.echo(f"  held:     {m.held} (release with `pipeline queue release {m.id}`)")
    click.echo("  recipients:")
    for r in m.recipients:
        nxt = f", next attempt {timestamp(r.next_attempt)}" if r.state.value in ("pending", "deferred") else ""
        click.echo(f"    <{r.address}>  {r.state.value}, {r.attempts} attempt(s){nxt}")
        if r.last_reply:
            click.echo(f"        last reply: {r.last_reply}")
    click.echo("  history:")
    if not detail.attempts:
        click.echo("    (no attempts yet)")
    for a in detail.attempts:
        host = f" {a.remote_host}" + (f" [{a.remote_addr}]" if a.remote_addr else "") if a.remote_host else ""
        click.echo(f"    {timestamp(a.time)}  <{a.recipient}>  {a.outcome}  via {a.route}{host}: "
                   f"{a.code} {a.enhanced or ''} {a.text}".rstrip())


def _ids_command(name: str, help_text: str, action: IdsAction, *, allow_all: bool, verb: str) -> click.Command:
    """A queue command over message IDs (or ``--all``): prints ``N recipient(s) <verb>`` or, with --json,
    ``{"command", "count", "server_woken"}``."""
    wakes = name in ("retry", "release")

    @click.command(name, help=help_text)
    @config_option
    @click.argument("message_ids", nargs=-1)
    @click.option("--all", "all_", is_flag=True, help="every queued message")
    @json_option
    @click.pass_context
    def command(ctx: click.Context, message_ids: tuple[str, ...], all_: bool, as_json: bool) -> None:
        if not message_ids and not all_:
            raise click.UsageError("name message IDs or use --all")
        if all_ and not allow_all:
            raise click.UsageError(f"--all is not allowed for {name}; name the message IDs")
        config = load(ctx)
        ids = None if all_ else list(message_ids)
        count = with_queue(config, lambda q: action(q, ids))
        woke = False
        if wakes:
            from ..control import poke

            woke = poke(config.settings.state_dir)
        if as_json:
            echo_json({"command": name, "count": count, "server_woken": woke})
        else:
            click.echo(f"{count} recipient(s) {verb}" + ("; the running server was told" if woke else ""))

    return command


async def _retry(q: QueueBackend, ids: list[str] | None) -> int:
    return await q.retry_now(ids, time.time())


async def _delete(q: QueueBackend, ids: list[str] | None) -> int:
    return await q.delete(ids or [])


async def _hold(q: QueueBackend, ids: list[str] | None) -> int:
    if ids is None:
        ids = [m.id for m in await q.list()]
    return await q.hold(ids)


async def _release(q: QueueBackend, ids: list[str] | None) -> int:
    if ids is None:
        ids = [m.id for m in await q.list(state="held")]
    return await q.release_hold(ids, time.time())


for _command in (
    _ids_command("retry", "Make deferred recipients due now and start a delivery run (even outside the schedule).",
                 _retry, allow_all=True, verb="made due now"),
    _ids_command("delete", "Remove messages from the queue without delivering them or telling the sender.",
                 _delete, allow_all=False, verb="deleted (messages)"),
    _ids_command("hold", "Stop delivering these messages until released.", _hold, allow_all=True, verb="held"),
    _ids_command("release", "Release held messages: they are due at once.", _release, allow_all=True,
                 verb="released"),
):
    queue.add_command(_command)
