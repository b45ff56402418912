"""What every command shares: ``-c/--config FILE`` before or after the command name, ``--json``,
and loading the configuration (one ``error: ...`` line per problem and exit status 2 when it is refused).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from ..config import LoadedConfig

F = TypeVar("F", bound=Callable[..., Any])

_KEY = "config"


def _remember(ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """Keep ``-c FILE`` on the root context; one given after the command name overrides one before it."""
    if value is not None:
        ctx.find_root().ensure_object(dict)[_KEY] = value
    return value


def config_option(f: F) -> F:
    """``-c/--config FILE`` on the ``pipeline`` group, a command group or a command (later ones win)."""
    return click.option("-c", "--config", "config_opt", metavar="FILE", expose_value=False, callback=_remember,
                        is_eager=True, help="configuration file (default: the embedded default)")(f)


json_option: Callable[[F], F] = click.option("--json", "as_json", is_flag=True, help="print as JSON")
"""``--json`` on a command that prints data: the command gets ``as_json: bool``."""


def config_path(ctx: click.Context) -> str | None:
    """The ``-c`` file given anywhere on the command line, or None (the embedded default)."""
    obj = ctx.find_root().obj
    return obj.get(_KEY) if isinstance(obj, dict) else None


def report(kind: str, text: str) -> None:
    """Print ``text`` on standard error, each of its lines as ``<kind>: <line>`` (``error``, ``warning``)."""
    for line in str(text).splitlines() or [""]:
        click.echo(f"{kind}: {line}", err=True)


def load(ctx: click.Context, *, only_queue: bool = False) -> LoadedConfig:
    """The validated configuration named by ``-c`` (or the embedded default).

    A refused configuration prints one ``error: <file>: <key path>: <what was expected>`` line
    per problem on standard error and exits with status 2. ``only_queue``: see ``load_config``.
    """
    from ..config import load_config
    from ..errors import ConfigError

    try:
        return load_config(config_path(ctx), only_queue=only_queue)
    except ConfigError as exc:
        report("error", str(exc))
        ctx.exit(2)
