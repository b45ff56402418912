"""``pipeline collect [ACCOUNT] [--dry-run]``: collect the accounts' POP3 mailboxes now, in this process.

The queue is opened and the chain's plugins are built (their ``startup`` runs, so ``accept``
stages such as a virus scanner are ready); each collecting account (or the one named, by
address or username) is collected once, exactly as ``pipeline serve`` collects it. A
running server is then woken to deliver what was queued (unless it waits for its delivery
schedule). ``--dry-run`` logs in and lists what would be fetched (with each new message's
sender, subject and recipients when the server has TOP), and changes nothing.
Exit status 1 when a mailbox could not be collected.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from .options import config_option, json_option, load
from .output import echo_json
from .runner import run

if TYPE_CHECKING:
    from ..collect.mailbox import RunReport
    from ..config import LoadedConfig

_ACTIONS = {"collect": "would collect", "collected": "collected", "known": "collected before, kept",
            "delete": "collected before, removed", "too_large": "too large, left on the server",
            "refused": "refused by the policy stages", "deferred": "not taken now, stays"}


async def collect_once(config: LoadedConfig, account: str | None, dry_run: bool) -> list[RunReport]:
    """Collect the named account (every collecting account for None) once; the reports."""
    from .. import control
    from ..clock import SystemClock
    from ..collect.service import Collector
    from ..errors import ConfigError
    from ..events import Events
    from ..intake.services import IntakeServices
    from ..runtime import RuntimeHolder, build_runtime, make_context, open_queue
    from ..sessions import Sessions

    settings = config.settings
    clock = SystemClock()
    events = Events(clock, node=settings.hostname)
    queue = await open_queue(config, make_context(config, clock=clock, events=events))
    stored: list[Any] = []
    try:
        events.attach(store=queue.add_event)
        context = make_context(config, clock=clock, events=events, queue=queue)
        runtime, _ = build_runtime(config, context)
        services = IntakeServices(RuntimeHolder(runtime), queue, events, clock, Sessions(clock), stored=stored.append)
        collector = Collector(services, queue, resolve=context.resolve_path)
        accounts = collector.find(account)
        if not accounts:
            known = ", ".join(a.address for a in collector.accounts()) or "none"
            raise ConfigError(f"{config.source}: no account {account!r} collects mail (collecting accounts: {known})"
                              if account else f"{config.source}: no account has collect: {{...}}")
        await runtime.chain.each("startup", context=context)
        try:
            reports = [await collector.collect(a, dry_run=dry_run) for a in accounts]
        finally:
            await runtime.chain.each("shutdown")
    finally:
        events.attach()
        await queue.close()
    if stored and settings.delivery.send_immediately:
        control.poke(settings.state_dir)
    return reports


def _print(report: RunReport) -> None:
    head = f"{report.account} ({report.source}): {report.on_server} message(s) on the server"
    if report.dry_run:
        head += "; dry run, nothing changed"
    else:
        head += f"; {len(report.collected)} collected, {report.deleted} removed from the server"
        for count, what in ((report.kept, "kept there"), (report.too_large, "too large"),
                            (report.refused, "refused"), (report.deferred, "not taken now")):
            if count:
                head += f", {count} {what}"
    click.echo(head)
    for row in report.rows:
        line = f"  {row.number:>4}  {row.uidl or '-':<20} {row.size:>9}  {_ACTIONS.get(row.action, row.action)}"
        if row.queue_id:
            line += f" as {row.queue_id}"
        if row.recipients:
            line += f" -> {', '.join(row.recipients)}"
        click.echo(line)
        if row.summary.get("from") or row.summary.get("subject"):
            click.echo(f"        from {row.summary.get('from') or '?'}: {row.summary.get('subject') or '(no subject)'}")
        if row.note:
            click.echo(f"        {row.note}")
    if report.error:
        click.echo(f"  error: {report.error}")


@click.command()
@config_option
@click.argument("account", required=False)
@click.option("--dry-run", is_flag=True, help="log in and list what would be fetched; change nothing")
@json_option
@click.pass_context
def collect(ctx: click.Context, account: str | None, dry_run: bool, as_json: bool) -> None:
    """Collect mail from the accounts' POP3 mailboxes now (ACCOUNT: one of them, by address or username)."""
    config = load(ctx)
    reports = run(collect_once(config, account, dry_run))
    if as_json:
        echo_json([r.as_dict() for r in reports])
    else:
        for report in reports:
            _print(report)
    if any(r.error for r in reports):
        ctx.exit(1)
