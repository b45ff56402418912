"""``pipeline queue list|show|cat|retry|delete|hold|release``: look at and act on queued messages.

Each opens the configuration's queue alone (``runner.with_queue``): no chain plugin is built,
so they work while ``pipeline serve`` runs and when a chain plugin could not start; a queue
that does not exist is refused (exit 1), never created. ``retry``, ``hold``, ``release`` and
``delete`` act on named messages or ``--all`` (optionally ``--state``); an unknown ID is an
``error:`` line and exit status 1 (the others are still acted on); every message acted on is
an audit event (``cli.<action>``) naming it and the user. ``retry`` and ``release`` then poke
a running server (``<state_dir>/control.sock``) so that it starts a delivery run at once.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import click

from .options import config_option, json_option
from .output import echo_json, timestamp
from .runner import with_queue

if TYPE_CHECKING:
    from ..adminqueue import AdminQueue
    from ..queue import MessageDetail

STATES = ["pending", "deferred", "held", "delivered", "failed", "expired"]
QUEUED = ["pending", "deferred", "held"]
_VERBS = {"retry": "made due now", "hold": "held", "release": "released", "delete": "deleted"}


@click.group()
@config_option
def queue() -> None:
    """Look at and act on queued messages."""


def _size(n: int) -> str:
    """``812 bytes``, ``12.3 KB``, ``4.0 MB``."""
    if n < 10 * 1024:
        return f"{n} bytes"
    return f"{n / 1024:.1f} KB" if n < 10 * 1024 * 1024 else f"{n / 1024 / 1024:.1f} MB"


def _recipient_rows(detail: MessageDetail) -> list[dict[str, Any]]:
    return [{"address": r.address, "state": r.state.value, "attempts": r.attempts,
             "next_attempt": r.next_attempt or None, "last_reply": r.last_reply}
            for r in detail.message.recipients]


@queue.command("list")
@config_option
@click.option("--state", type=click.Choice(STATES),
              help="messages with a recipient in this state (default: every message still queued)")
@json_option
@click.pass_context
def queue_list(ctx: click.Context, state: str | None, as_json: bool) -> None:
    """Messages in the queue, oldest first, with each waiting recipient and why it waits (its last reply)."""

    async def read(target: AdminQueue) -> tuple[list[Any], dict[str, MessageDetail | None], str]:
        rows = await target.queue.list(state=state)
        details = {r.id: await target.queue.get(r.id) for r in rows}
        return rows, details, target.queue.location

    rows, details, location = with_queue(ctx, read)
    if as_json:
        echo_json([{**asdict(r), "recipient_list": _recipient_rows(d) if (d := details[r.id]) else []}
                   for r in rows])
        return
    if not rows:
        click.echo(f"no message has a recipient {state} ({location})" if state else f"queue is empty ({location})")
        return
    shown = {*QUEUED, *([state] if state else [])}
    click.echo(f"{'ID':20} {'SIZE':>10}  {'ARRIVED (UTC)':19}  SENDER / RECIPIENTS (why each waits)")
    totals: Counter[str] = Counter()
    for r in rows:
        totals.update(r.recipients)
        click.echo(f"{r.id:20} {r.size:>10}  {timestamp(r.created):19}  <{r.sender}>")
        detail = details[r.id]
        for rcpt in detail.message.recipients if detail else []:
            if rcpt.state.value not in shown:
                continue
            when = f", next attempt {timestamp(rcpt.next_attempt)}" if rcpt.state.value in ("pending", "deferred") \
                else ""
            click.echo(f"{'':53}<{rcpt.address}>  {rcpt.state.value}{when}")
            if rcpt.last_reply:
                click.echo(f"{'':55}({rcpt.last_reply})")
    states = ", ".join(f"{n} {s}" for s, n in sorted(totals.items()))
    click.echo(f"-- {len(rows)} message(s), {_size(sum(r.size for r in rows))}, "
               f"{sum(totals.values())} recipient(s) ({states}) in {location}")


def _missing(ctx: click.Context, message_id: str) -> None:
    click.echo(f"error: no message {message_id} in the queue", err=True)
    ctx.exit(1)


@queue.command("show")
@config_option
@click.argument("message_id")
@json_option
@click.pass_context
def queue_show(ctx: click.Context, message_id: str, as_json: bool) -> None:
    """One message: its recipients and their states, and the history of every attempt."""
    detail = with_queue(ctx, lambda target: target.queue.get(message_id))
    if detail is None:
        _missing(ctx, message_id)
        return
    m = detail.message
    if as_json:
        echo_json({
            "id": m.id, "sender": m.sender, "created": m.created, "size": m.size, "client": detail.client,
            "recipients": _recipient_rows(detail), "attempts": [asdict(a) for a in detail.attempts],
            "held": m.held,
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


@queue.command("cat")
@config_option
@click.argument("message_id")
@click.option("--raw", is_flag=True, help="the stored bytes exactly (CRLF line ends)")
@click.pass_context
def queue_cat(ctx: click.Context, message_id: str, raw: bool) -> None:
    """Print a queued message (headers and body) as it will be sent, like postcat -q."""

    async def read(target: AdminQueue) -> bytes | None:
        if await target.queue.get(message_id) is None:
            return None
        return await target.queue.read_body(message_id)

    data = with_queue(ctx, read)
    if data is None:
        _missing(ctx, message_id)
        return
    out = click.get_binary_stream("stdout")
    out.write(data if raw else data.replace(b"\r\n", b"\n"))
    out.flush()


def _who() -> str:
    """The administrator: the login behind sudo, else the user running the command."""
    import getpass
    import os

    return os.environ.get("SUDO_USER") or getpass.getuser()


def _ids_command(name: str, help_text: str) -> click.Command:
    """A queue command over message IDs (or ``--all``, optionally ``--state``): prints
    ``N recipient(s) <verb>`` or, with --json, ``{"command", "count", "server_woken"}``."""
    wakes = name in ("retry", "release")

    @click.command(name, help=help_text)
    @config_option
    @click.argument("message_ids", nargs=-1)
    @click.option("--all", "all_", is_flag=True, help="every queued message (or, with --state, those with a "
                                                       "recipient in that state)")
    @click.option("--state", type=click.Choice(QUEUED), help="with --all: only messages with a recipient in "
                                                             "this state")
    @json_option
    @click.pass_context
    def command(ctx: click.Context, message_ids: tuple[str, ...], all_: bool, state: str | None,
                as_json: bool) -> None:
        if not message_ids and not all_:
            raise click.UsageError("name message IDs or use --all")
        if message_ids and all_:
            raise click.UsageError("name message IDs or use --all, not both")
        if state and not all_:
            raise click.UsageError("--state goes with --all")
        user = _who()

        async def act(target: AdminQueue) -> tuple[Any, str]:
            from ..queueactions import perform

            done = await perform(target.queue, target.events(), name, None if all_ else list(message_ids),
                                 now=time.time(), via="cli", user=user, who=f"{user} (pipeline queue {name})",
                                 state=state)
            return done, str(target.state_dir)

        done, state_dir = with_queue(ctx, act)
        woke = False
        if wakes:
            from pathlib import Path

            from ..control import poke

            woke = poke(Path(state_dir))
        if as_json:
            echo_json({"command": name, "count": done.count, "server_woken": woke})
        else:
            what = "message(s)" if name == "delete" else "recipient(s)"
            click.echo(f"{done.count} {what} {_VERBS[name]}" + ("; the running server was told" if woke else ""))
        for mid in done.unknown:
            click.echo(f"error: no message {mid} in the queue", err=True)
        if done.unknown:
            ctx.exit(1)

    return command


for _command in (
    _ids_command("retry", "Make deferred recipients due now and start a delivery run (even outside the schedule)."),
    _ids_command("delete", "Remove messages from the queue without delivering them or telling the sender."),
    _ids_command("hold", "Stop delivering these messages until released."),
    _ids_command("release", "Release held messages: they are due at once."),
):
    queue.add_command(_command)
