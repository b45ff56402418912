"""``pipeline rules test -c FILE message.eml --from A --to B``: a dry run of the policy stages.

The chain's plugins are built (no queue, no ``startup``); each that implements
``explain_accept`` (``rules``, ``clamav``) says, without side effects, what it would do with the
message: which rules match, the outcome (accept, reject with its reply, hold, drop), the
envelope and header changes, and where each recipient would be routed. Nothing is sent,
scanned, stored or counted.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .options import config_option, json_option, load
from .output import echo_json
from .runner import run

if TYPE_CHECKING:
    from ..config import LoadedConfig


async def dry_run(config: LoadedConfig, data: bytes, sender: str, recipients: list[str], client: str,
                  auth_user: str | None) -> list[dict[str, Any]]:
    """One entry per chain entry with ``explain_accept``: its name and the facts it gives."""
    from ..ids import new_queue_id
    from ..intake.normalise import normalise_line_ends
    from ..message import Message, Recipient, SessionInfo
    from ..runtime import build_runtime, make_context

    runtime, _ = build_runtime(config, make_context(config))
    session = SessionInfo(peer=client, helo="rules-test", auth_user=auth_user, may_relay=True)
    message = Message(new_queue_id(), sender, [Recipient(r) for r in recipients], time.time(), session=session)
    message.set_body(normalise_line_ends(data))
    out = []
    for impl in runtime.chain.implementations("explain_accept"):
        facts = await runtime.chain.call(impl, "explain_accept", {"message": message, "session": session})
        if facts is not None:
            out.append({"entry": impl.plugin_name, **facts})
    return out


def _print(rows: list[dict[str, Any]]) -> None:
    if not rows:
        click.echo("no chain entry has a policy stage (rules, clamav): the message would be accepted as it is")
        return
    for row in rows:
        click.echo(f"{row['entry']}:")
        for rule in row.get("rules", []):
            mark = "MATCH" if rule["matched"] else "-    "
            click.echo(f"  {mark} {rule['rule']}: {'; '.join(rule['actions'])}")
        for key, value in row.items():
            if key in ("entry", "rules"):
                continue
            if isinstance(value, dict):
                click.echo(f"  {key}:")
                for k, v in value.items():
                    click.echo(f"    {k}: {v}")
            elif isinstance(value, list):
                click.echo(f"  {key}: {', '.join(str(v) for v in value)}")
            else:
                click.echo(f"  {key}: {value}")


@click.group()
@config_option
def rules() -> None:
    """The policy rules (the rules plugin)."""


@rules.command("test")
@config_option
@click.argument("message_file", metavar="MESSAGE.eml", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--from", "sender", default="", help="envelope sender (default: <>)")
@click.option("--to", "recipients", multiple=True, required=True, help="envelope recipient (repeat for more)")
@click.option("--client", default="127.0.0.1", show_default=True, help="the SMTP client's address")
@click.option("--auth-user", default=None, help="the SMTP AUTH login (default: not logged in)")
@json_option
@click.pass_context
def rules_test(ctx: click.Context, message_file: Path, sender: str, recipients: tuple[str, ...], client: str,
               auth_user: str | None, as_json: bool) -> None:
    """Dry run: which rules match MESSAGE.eml and what would happen; nothing is sent, scanned or stored."""
    config = load(ctx)
    rows = run(dry_run(config, message_file.read_bytes(), sender, list(recipients), client, auth_user))
    if as_json:
        echo_json(rows)
    else:
        _print(rows)
