"""``pipeline log``, ``events`` and ``stats``: what an administrator reads when mail goes wrong.

- ``log``: the message log, one line per attempt of one recipient (time, route,
  remote host and address, SMTP reply, outcome, what it led to, duration);
- ``events``: the gateway's own event log (started, stopped, logins that
  failed, DNS failures, messages expired, reports sent, history pruned);
- ``stats``: counts per outcome over a period, the queue depth and the oldest
  queued message.

Each opens the queue alone (no running server needed, no chain plugin built) and takes
``--json``. ``--since`` takes a duration back from now (``30m``, ``2h``, ``7d``) or a date
and time in UTC (``2024-05-01`` or ``2024-05-01T10:00``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ..durations import format_duration, human_duration, parse_duration
from .options import config_option, json_option
from .output import echo_json, timestamp
from .runner import with_queue

if TYPE_CHECKING:
    from ..adminqueue import AdminQueue

T = TypeVar("T")

OUTCOMES = ["delivered", "deferred", "bounced", "expired", "dropped", "temporary", "permanent"]
ACTIONS = ["delivered", "deferred", "bounced", "expired", "dropped"]


def parse_since(value: str | None, now: float) -> float | None:
    """``2h`` -> two hours before ``now``; ``2024-05-01[T10:00]`` -> that time (UTC); None stays None.

    Called by the ``--since`` options; anything else is a ``click.BadParameter`` (exit status 2).
    """
    if value is None:
        return None
    try:
        return now - parse_duration(value)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(f"expected a duration (2h, 7d) or a UTC date/time (2024-05-01T10:00), "
                                 f"got {value!r}") from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


_since_option = click.option("--since", metavar="WHEN",
                             help="from this long ago (30m, 2h, 7d) or this UTC date/time (2024-05-01T10:00)")


async def read(target: AdminQueue, rows: Awaitable[T]) -> tuple[T, str]:
    """What a command read from the queue, and where the queue is (the commands name it)."""
    return await rows, target.queue.location


def _what(action: str, outcome: str) -> str:
    """``bounced (permanent)``; just ``delivered`` when both say the same."""
    return outcome if not action or action == outcome else f"{action} ({outcome})"


def _reply(code: int | None, enhanced: str | None, text: str) -> str:
    """``550 5.1.1 user unknown`` with the parts that are there."""
    return " ".join(str(p) for p in (code, enhanced, text) if p)


@click.command("log")
@config_option
@click.option("-m", "--message", "message_id", metavar="ID", help="attempts of this message")
@click.option("--sender", metavar="ADDRESS", help="attempts of mail from this envelope sender")
@click.option("--recipient", metavar="ADDRESS", help="attempts for this recipient")
@_since_option
@click.option("--outcome", type=click.Choice(OUTCOMES),
              help="delivered, deferred, bounced, expired, dropped (what the attempt led to) "
                   "or temporary, permanent (the kind of reply)")
@click.option("--limit", default=200, show_default=True, help="show the newest N attempts")
@json_option
@click.pass_context
def log_cmd(ctx: click.Context, message_id: str | None, sender: str | None, recipient: str | None,
            since: str | None, outcome: str | None, limit: int, as_json: bool) -> None:
    """The message log: every delivery attempt of every recipient, oldest first."""
    filters: dict[str, Any] = {"message": message_id, "sender": sender, "recipient": recipient,
                               "since": parse_since(since, time.time()), "outcome": outcome}
    rows, location = with_queue(ctx, lambda target: read(target, target.queue.attempts(limit=limit, **filters)))
    if as_json:
        echo_json([{**asdict(a), "reply": _reply(a.code, a.enhanced, a.text)} for a in rows])
        return
    if not rows:
        click.echo(f"no attempts match (queue {location})")
        return
    for a in rows:
        host = ""
        if a.remote_host:
            host = f" {a.remote_host}" + (f" [{a.remote_addr}]" if a.remote_addr else "")
        click.echo(f"{timestamp(a.time)}  {a.message_id}  <{a.sender}> -> <{a.recipient}>  "
                   f"{_what(a.action, a.outcome)}  via {a.route}{host}  {a.duration:.2f}s")
        click.echo(f"    {_reply(a.code, a.enhanced, a.text)}")


@click.command("events")
@config_option
@_since_option
@click.option("--kind", metavar="KIND", help="this kind or family (message.expired, dsn)")
@click.option("--level", type=click.Choice(["debug", "info", "warning", "error"]),
              help="only events at this level or above")
@click.option("--limit", default=200, show_default=True, help="show the newest N events")
@json_option
@click.pass_context
def events_cmd(ctx: click.Context, since: str | None, kind: str | None, level: str | None, limit: int,
               as_json: bool) -> None:
    """The event log of the gateway itself, oldest first."""
    start = parse_since(since, time.time())
    rows, location = with_queue(ctx, lambda target: read(
        target, target.queue.events(since=start, limit=limit, kind=kind, level=level)))
    if as_json:
        echo_json([asdict(e) for e in rows])
        return
    if not rows:
        click.echo(f"no events match (queue {location})")
        return
    for e in rows:
        click.echo(f"{timestamp(e.time)}  {e.level:7}  {e.kind:22}  {e.text}")


@click.command("stats")
@config_option
@click.option("--since", metavar="WHEN", default="24h", show_default=True,
              help="the period: from this long ago (30m, 2h, 7d) or this UTC date/time")
@json_option
@click.pass_context
def stats_cmd(ctx: click.Context, since: str, as_json: bool) -> None:
    """Counts per outcome over a period, queue depth and the oldest queued message."""
    now = time.time()
    start = parse_since(since, now)
    assert start is not None
    st, location = with_queue(ctx, lambda target: read(target, target.queue.stats(since=start, now=now)))
    outcomes = {a: st.outcomes.get(a, 0) for a in ACTIONS}
    outcomes.update({k: v for k, v in st.outcomes.items() if k not in outcomes})
    data = {
        "period": {"since": st.since, "until": st.until, "seconds": round(st.until - st.since)},
        "outcomes": outcomes,
        "received": st.received,
        "notifications": st.notifications,
        "queue_depth": st.queue_depth,
        "recipients": st.recipients,
        "oldest": st.oldest,
        "oldest_age": None if st.oldest is None else round(now - st.oldest),
        "next_attempt": st.next_attempt,
    }
    if as_json:
        echo_json(data)
        return
    span = format_duration(round(st.until - st.since))
    click.echo(f"period: {timestamp(st.since)} to {timestamp(st.until)} UTC ({span})")
    click.echo("  recipient attempts: " + ", ".join(f"{n} {k}" for k, n in outcomes.items()))
    click.echo(f"  messages received: {st.received} (of which {st.notifications} delivery reports)")
    click.echo(f"queue: {st.queue_depth} message(s)"
               + (" (" + ", ".join(f"{n} {s}" for s, n in sorted(st.recipients.items())) + " recipients)"
                  if st.recipients else "") + f" in {location}")
    if st.oldest is not None:
        click.echo(f"  oldest: arrived {timestamp(st.oldest)} UTC, {human_duration(now - st.oldest)} ago")
    if st.next_attempt:
        click.echo(f"  next attempt: {timestamp(st.next_attempt)} UTC")


COMMANDS = [log_cmd, events_cmd, stats_cmd]
"""The commands of this module, registered on ``pipeline`` by the package."""
