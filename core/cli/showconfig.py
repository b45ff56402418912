"""``pipeline config``: the effective configuration, defaults filled in and secrets masked (``postconf``).

Every key with the value in force: the file's, else the default (``postconf -d``); with
``--changed`` only the keys the file sets (``postconf -n``). Relative paths are shown
resolved, durations in seconds and sizes in bytes. Passwords, tokens, hashes and the
queue's DSN are never shown. YAML by default, JSON with ``--json``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from .options import config_option, json_option, load
from .output import echo_json

if TYPE_CHECKING:
    from pydantic import BaseModel

    from ..config import LoadedConfig

MASK = "********"
_SECRET_WORDS = ("password", "token", "secret", "dsn")


def masked(value: Any, key: str = "") -> Any:
    """``value`` with every secret replaced by ``********``: keys naming passwords, tokens, hashes or a DSN,
    and values pydantic dumps as secret (``**********``)."""
    if isinstance(value, dict):
        return {k: masked(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v, key) for v in value]
    if value not in (None, "", []) and (any(w in key.lower() for w in _SECRET_WORDS) or value == "**********"):
        return MASK
    return value


def _dump(model: BaseModel, changed: bool) -> dict[str, Any]:
    return model.model_dump(mode="json", exclude_unset=changed)


def effective(config: LoadedConfig, *, changed: bool = False) -> dict[str, Any]:
    """The configuration in force as plain data (secrets masked); ``changed``: only what the file sets."""
    top = _dump(config.settings, changed)
    if "queue" in top or not changed:
        top["queue"] = {config.queue.name: _dump(config.queue.options, changed)}
    if "chain" in top or not changed:
        top["chain"] = [{spec.name: _dump(spec.options, changed)} for spec in config.chain]
    order = [name for name in type(config.settings).model_fields if name in top]
    return masked({name: top[name] for name in order})


@click.command("config")
@config_option
@click.option("-n", "--changed", is_flag=True, help="only the keys the file sets (like postconf -n)")
@json_option
@click.pass_context
def show_config(ctx: click.Context, changed: bool, as_json: bool) -> None:
    """Print the effective configuration: every key with its value or default, secrets masked."""
    config = load(ctx)
    data = effective(config, changed=changed)
    if as_json:
        echo_json(data)
        return
    import yaml

    click.echo(f"# {config.source}" + (" (keys it sets)" if changed else " (with defaults)"))
    click.echo(yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True).rstrip())
