"""``pipeline plugins``: the installed plugins (entry point group ``mailpipe.plugins``) and their hooks.

With ``-c FILE`` the configuration is loaded too and each plugin is marked with where that
configuration uses it (``queue``, ``chain[N]``): a first column, and the JSON fields
``in_config`` (true or false) and ``used_as`` (those places). Without ``-c`` the list is
the same for every configuration and nothing is marked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from .options import config_option, config_path, json_option, load
from .output import echo_json

if TYPE_CHECKING:
    from ..config import LoadedConfig


def installed_rows() -> list[dict[str, Any]]:
    """One row per installed plugin, by name: distribution and its version, class, hooks implemented, description.

    A plugin whose class cannot be loaded is listed with no hooks and ``BROKEN: <why>``.
    """
    from .. import hookspecs
    from ..errors import ConfigError
    from ..registry import installed

    hook_names = {n for n in dir(hookspecs) if getattr(getattr(hookspecs, n), "mailpipe_spec", None)}
    rows = []
    for name, inst in sorted(installed().items()):
        row: dict[str, Any] = {"name": name, "distribution": inst.distribution, "version": inst.version,
                               "class": inst.entry_point.value}
        try:
            cls = inst.load()
        except ConfigError as exc:
            rows.append({**row, "hooks": [], "description": f"BROKEN: {exc}"})
            continue
        hooks = sorted(h for h in hook_names if getattr(getattr(cls, h, None), "mailpipe_impl", None) is not None)
        rows.append({**row, "hooks": hooks, "description": cls.describe()})
    return rows


def uses(config: LoadedConfig) -> dict[str, list[str]]:
    """Plugin name -> where ``config`` uses it: ``queue`` and/or ``chain[N]``."""
    found: dict[str, list[str]] = {config.queue.name: ["queue"]}
    for i, spec in enumerate(config.chain):
        found.setdefault(spec.plugin or spec.name, []).append(f"chain[{i}]")
    return found


@click.command()
@config_option
@json_option
@click.pass_context
def plugins(ctx: click.Context, as_json: bool) -> None:
    """List installed plugins (entry point group mailpipe.plugins) and the hooks they implement.

    With -c, mark the ones the configuration's queue and chain use.
    """
    used = uses(load(ctx)) if config_path(ctx) is not None else None
    rows = installed_rows()
    if used is not None:
        for row in rows:
            row["in_config"] = row["name"] in used
            row["used_as"] = used.get(row["name"], [])
    if as_json:
        echo_json(rows)
        return
    mark_width = max([len(", ".join(r["used_as"])) for r in rows] + [9]) if used is not None else 0
    if used is not None:
        click.echo(f"{'IN CONFIG':{mark_width}} {'PLUGIN':12} {'DISTRIBUTION':18} {'VERSION':9} HOOKS")
    for row in rows:
        mark = "" if used is None else f"{', '.join(row['used_as']) or '-':{mark_width}} "
        click.echo(f"{mark}{row['name']:12} {row['distribution']:18} {row['version']:9} {', '.join(row['hooks'])}")
        if row["description"]:
            click.echo(f"{'':{len(mark)}}{'':12} {row['description']}")
