"""The ``pipeline`` command.

Every command takes ``-c/--config FILE`` before or after the command name;
without it the embedded default is used. Commands that print data take
``--json``. Exit status: 0 done, 1 failed, 2 bad usage or bad configuration.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any, TypeVar

import click

from . import control
from .config import LoadedConfig, load_config
from .errors import ConfigError
from .gateway import Gateway
from .queue import QueueBackend, QueueError

T = TypeVar("T")


def _config_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """``-c/--config`` on a subcommand, overriding one given before the subcommand."""

    def remember(ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
        if value is not None:
            ctx.ensure_object(dict)["config"] = value
            root = ctx.find_root()
            root.ensure_object(dict)["config"] = value
        return value

    return click.option("-c", "--config", "config_opt", metavar="FILE", expose_value=False, callback=remember,
                        is_eager=True, help="configuration file (default: the embedded default)")(f)


def _load(ctx: click.Context) -> LoadedConfig:
    path = ctx.find_root().ensure_object(dict).get("config")
    try:
        return load_config(path)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        ctx.exit(2)
        raise  # unreachable


def _run(coro: Awaitable[T], *, fast_loop: bool = False) -> T:
    """Run a coroutine; ``fast_loop`` uses uvloop when it is installed (``pipeline serve``)."""
    loop_factory = None
    if fast_loop:
        try:
            import uvloop

            loop_factory = uvloop.new_event_loop
        except ImportError:
            pass
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(coro)  # type: ignore[arg-type]
    except (ConfigError, QueueError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2 if isinstance(exc, ConfigError) else 1)


def _with_queue(fn: Callable[[QueueBackend, Gateway], Awaitable[T]], config: LoadedConfig) -> T:
    async def run() -> T:
        gw = Gateway(config)
        await gw.open_queue_only()
        try:
            return await fn(gw.queue, gw)
        finally:
            await gw.queue.close()

    return _run(run())


def _ts(t: float | None) -> str:
    if not t:
        return "-"
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-c", "--config", "config", metavar="FILE", help="configuration file (default: the embedded default)")
@click.pass_context
def main(ctx: click.Context, config: str | None) -> None:
    """mailpipe: a plugin-based outbound mail gateway."""
    ctx.ensure_object(dict)
    if config is not None:
        ctx.obj["config"] = config


@main.command()
@_config_option
@click.pass_context
def serve(ctx: click.Context) -> None:
    """Accept mail on the listeners and deliver it, until SIGTERM or SIGINT."""
    config = _load(ctx)
    logging.basicConfig(
        level=config.settings.log.level.upper(), stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd's per-command chatter
    gw = Gateway(config)
    _run(gw.run(), fast_loop=True)


@main.command()
@_config_option
@click.option("--json", "as_json", is_flag=True, help="print as JSON")
@click.pass_context
def check(ctx: click.Context, as_json: bool) -> None:
    """Validate the configuration and print the resolved chain, hook by hook."""
    config = _load(ctx)
    gw = Gateway(config)
    order = gw.chain.order()
    if as_json:
        _json({"config": config.source, "queue": config.queue.name,
               "chain": [p.name for p in config.chain], "hooks": order})
        return
    click.echo(f"configuration {config.source}: OK")
    click.echo(f"hostname: {config.settings.hostname}")
    click.echo(f"listen: {', '.join(s.address for s in config.settings.listen)}")
    click.echo(f"queue: {config.queue.name}")
    click.echo("chain (in order): " + (" -> ".join(p.name for p in config.chain) or "(empty)"))
    for hook, names in order.items():
        if names:
            click.echo(f"  {hook:14} {' -> '.join(names)}")


@main.command()
@_config_option
@click.option("--json", "as_json", is_flag=True, help="print as JSON")
def plugins(as_json: bool) -> None:
    """List installed plugins (entry point group mailpipe.plugins) and the hooks they implement."""
    from . import hookspecs
    from .registry import installed

    rows = []
    hook_names = {n for n in dir(hookspecs) if getattr(getattr(hookspecs, n), "mailpipe_spec", None)}
    for name, inst in sorted(installed().items()):
        try:
            cls = inst.load()
            hooks = sorted(h for h in hook_names if getattr(getattr(cls, h, None), "mailpipe_impl", None) is not None)
            rows.append({"name": name, "distribution": inst.distribution, "class": inst.entry_point.value,
                         "hooks": hooks, "description": cls.describe()})
        except ConfigError as exc:
            rows.append({"name": name, "distribution": inst.distribution, "class": inst.entry_point.value,
                         "hooks": [], "description": f"BROKEN: {exc}"})
    if as_json:
        _json(rows)
        return
    for row in rows:
        click.echo(f"{row['name']:12} {row['distribution']:18} {', '.join(row['hooks'])}")
        if row["description"]:
            click.echo(f"{'':12} {row['description']}")


@main.command("hash-password")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
def hash_password_cmd(password: str) -> None:
    """Print an argon2 hash for relay.users[].password_hash."""
    from .intake.auth import hash_password

    click.echo(hash_password(password))


@main.command()
@_config_option
@click.argument("address")
@click.option("--sender", default="", help="envelope sender for the dry run")
@click.option("--json", "as_json", is_flag=True, help="print as JSON")
@click.pass_context
def route(ctx: click.Context, address: str, sender: str, as_json: bool) -> None:
    """Dry run: how a recipient would leave (route, hosts in order, credentials mode); sends nothing."""
    config = _load(ctx)

    async def run() -> list[dict[str, Any]]:
        from .ids import new_queue_id
        from .message import Message, Recipient

        gw = Gateway(config)
        msg = Message(new_queue_id(), sender, [Recipient(address)], time.time())
        routes, unrouted = await gw.scheduler.route(msg, [address])
        out = []
        for r in routes:
            facts = await gw.chain.first("explain_route", route=r) or {}
            out.append({"recipient": r.recipients, "plugin": r.plugin, "kind": r.kind,
                        "destination": r.destination, **facts})
        for u in unrouted:
            out.append({"recipient": [u], "plugin": None, "kind": "none", "destination": "no route"})
        return out

    result = _run(run())
    if as_json:
        _json(result)
        return
    for r in result:
        click.echo(f"{', '.join(r['recipient'])}: {r['kind']} via {r['plugin']} -> {r['destination']}")
        for key, value in r.items():
            if key in ("recipient", "plugin", "kind", "destination"):
                continue
            if isinstance(value, list):
                click.echo(f"  {key}:")
                for item in value:
                    click.echo(f"    {item}")
            else:
                click.echo(f"  {key}: {value}")


# -- queue administration ---------------------------------------------------------------------


@main.group()
@_config_option
def queue() -> None:
    """Look at and act on queued messages."""


@queue.command("list")
@_config_option
@click.option("--state", type=click.Choice(["pending", "deferred", "held", "delivered", "failed", "expired"]),
              help="messages with a recipient in this state (default: every message still queued)")
@click.option("--json", "as_json", is_flag=True, help="print as JSON")
@click.pass_context
def queue_list(ctx: click.Context, state: str | None, as_json: bool) -> None:
    """Messages in the queue, oldest first."""
    rows = _with_queue(lambda q, _gw: q.list(state=state), _load(ctx))
    if as_json:
        _json([asdict(r) for r in rows])
        return
    if not rows:
        click.echo("queue is empty")
        return
    click.echo(f"{'ID':20} {'ARRIVED (UTC)':19} {'SIZE':>8}  {'NEXT ATTEMPT':19}  SENDER / RECIPIENTS")
    for r in rows:
        states = ", ".join(f"{n} {s}" for s, n in sorted(r.recipients.items()))
        click.echo(f"{r.id:20} {_ts(r.created):19} {r.size:>8}  {_ts(r.next_attempt):19}  "
                   f"<{r.sender}> ({states})")


@queue.command("show")
@_config_option
@click.argument("message_id")
@click.option("--json", "as_json", is_flag=True, help="print as JSON")
@click.pass_context
def queue_show(ctx: click.Context, message_id: str, as_json: bool) -> None:
    """One message: its recipients and their states, and the history of every attempt."""
    detail = _with_queue(lambda q, _gw: q.get(message_id), _load(ctx))
    if detail is None:
        click.echo(f"error: no message {message_id} in the queue", err=True)
        ctx.exit(1)
    assert detail is not None
    m = detail.message
    if as_json:
        _json({
            "id": m.id, "sender": m.sender, "created": m.created, "size": m.size, "client": detail.client,
            "recipients": [{"address": r.address, "state": r.state.value, "attempts": r.attempts,
                            "next_attempt": r.next_attempt or None, "last_reply": r.last_reply}
                           for r in m.recipients],
            "attempts": [asdict(a) for a in detail.attempts],
        })
        return
    click.echo(f"message {m.id}")
    click.echo(f"  from:     <{m.sender}>")
    click.echo(f"  arrived:  {_ts(m.created)} UTC from {detail.client.get('peer', '?')}"
               f" (helo {detail.client.get('helo')})")
    click.echo(f"  size:     {m.size} bytes")
    click.echo("  recipients:")
    for r in m.recipients:
        nxt = f", next attempt {_ts(r.next_attempt)}" if r.state.value in ("pending", "deferred") else ""
        click.echo(f"    <{r.address}>  {r.state.value}, {r.attempts} attempt(s){nxt}")
        if r.last_reply:
            click.echo(f"        last reply: {r.last_reply}")
    click.echo("  history:")
    if not detail.attempts:
        click.echo("    (no attempts yet)")
    for a in detail.attempts:
        host = f" {a.remote_host}" + (f" [{a.remote_addr}]" if a.remote_addr else "") if a.remote_host else ""
        click.echo(f"    {_ts(a.time)}  <{a.recipient}>  {a.outcome}  via {a.route}{host}: "
                   f"{a.code} {a.enhanced or ''} {a.text}".rstrip())


def _ids_command(name: str, help_text: str, action: Callable[[QueueBackend, list[str] | None], Awaitable[int]],
                 *, allow_all: bool, verb: str) -> None:
    @queue.command(name, help=help_text)
    @_config_option
    @click.argument("message_ids", nargs=-1)
    @click.option("--all", "all_", is_flag=True, help="every queued message")
    @click.option("--json", "as_json", is_flag=True, help="print as JSON")
    @click.pass_context
    def command(ctx: click.Context, message_ids: tuple[str, ...], all_: bool, as_json: bool) -> None:
        if not message_ids and not all_:
            raise click.UsageError("name message IDs or use --all")
        if all_ and not allow_all:
            raise click.UsageError(f"--all is not allowed for {name}; name the message IDs")
        config = _load(ctx)
        ids = None if all_ else list(message_ids)
        count = _with_queue(lambda q, _gw: action(q, ids), config)
        woke = name in ("retry", "release") and control.poke(config.settings.state_dir)
        if as_json:
            _json({"command": name, "count": count, "server_woken": woke})
        else:
            click.echo(f"{count} recipient(s) {verb}" + ("; the running server was told" if woke else ""))

    command.__name__ = f"queue_{name}"


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


_ids_command("retry", "Make deferred recipients due now and start a delivery run (even outside the schedule).",
             _retry, allow_all=True, verb="made due now")
_ids_command("delete", "Remove messages from the queue without delivering them or telling the sender.",
             _delete, allow_all=False, verb="deleted (messages)")
_ids_command("hold", "Stop delivering these messages until released.", _hold, allow_all=True, verb="held")
_ids_command("release", "Release held messages: they are due at once.", _release, allow_all=True, verb="released")

from .cli_logs import COMMANDS as _LOG_COMMANDS  # noqa: E402 - log, events, stats need the helpers above

for _command in _LOG_COMMANDS:
    main.add_command(_command)
