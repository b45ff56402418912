"""Loading configuration: YAML file -> ``${ENV}`` substitution -> pydantic -> plugin options.

Every mistake is refused before anything starts, as one ``ConfigError`` whose lines
(one per problem, all of them at once) name the file, the key path
(``chain[0].smarthost.port``) and what was expected, in mailpipe's words
(``configerrors.py``). Every file the configuration names (certificates, keys, CA
bundles) is checked here too (``settings.CaFile`` and friends), so ``pipeline check``
and ``pipeline serve`` refuse the same configurations.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from . import configerrors
from .configfile import EMBEDDED, Loc, Problem, key_path, read_yaml, refuse, substitute_env
from .errors import ConfigError
from .paths import resolve
from .registry import load_plugin
from .settings import Settings, chain_entries

if TYPE_CHECKING:
    from .plugin import Plugin

__all__ = ["EMBEDDED", "LoadedConfig", "PluginSpec", "QUEUE_KEYS", "key_path", "load_config"]

QUEUE_KEYS = ("hostname", "state_dir", "queue")
"""The top-level keys the queue commands read (``load_config(only_queue=True)``)."""

ENTRY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
"""What a chain entry's ``name:`` may be (it appears in routes, logs and the message log)."""


@dataclass(frozen=True)
class PluginSpec:
    """One configured plugin: its entry's name, class, validated options and key path.

    ``name`` is the chain entry's name: the installed plugin's name (``plugin``) unless the
    entry gives itself another with ``name:`` (``- smarthost: {name: smarthost-big, ...}``),
    so one plugin can stand in the chain more than once and be named by ``route_via``.
    """

    name: str
    cls: type[Plugin]
    options: BaseModel
    key_path: str
    plugin: str = ""


@dataclass(frozen=True)
class LoadedConfig:
    """A validated configuration ready to run (``chain`` is empty when only the queue was loaded)."""

    settings: Settings
    source: str
    base_dir: Path
    queue: PluginSpec
    chain: list[PluginSpec]
    raw: dict[str, Any]


def _plugin_spec(entry: Any, loc: Loc, context: dict[str, Any]) -> tuple[PluginSpec | None, list[Problem]]:
    """Validate one ``{name: options}`` entry with its plugin's ``Options``; the spec or the problems."""
    (name, options), = entry.items()
    try:
        cls = load_plugin(str(name))
    except ConfigError as exc:
        return None, [Problem(loc, str(exc))]
    if options is not None and not isinstance(options, dict):
        return None, [Problem(loc + (name,), f"expected the options of {name} as a mapping (key: value), "
                                             f"got {type(options).__name__}")]
    instance = str(name)
    if isinstance(options, dict) and "name" in options and "name" not in cls.Options.model_fields:
        options = dict(options)
        given = options.pop("name")
        if not isinstance(given, str) or not ENTRY_NAME.fullmatch(given):
            return None, [Problem(loc + (name, "name"), f"expected an entry name of letters, digits, '.', '_' "
                                                        f"and '-' such as {name}-big, got {given!r}")]
        instance = given
    try:
        # The context lets a plugin check its options against the rest of the config (e.g. accounts)
        # and find the files it names (relative to the config file's folder).
        validated = cls.Options.model_validate(options or {}, context=context)
    except ValidationError as exc:
        return None, configerrors.problems(exc, cls.Options, loc + (name,))
    return PluginSpec(instance, cls, validated, key_path(loc + (name,)), str(name)), []


def _entries(data: dict[str, Any], settings: Settings | None, only_queue: bool) -> tuple[Any, list[tuple[int, Any]]]:
    """The queue entry and the (index, chain entry) pairs to validate: from the settings, or (when those
    were refused) every entry of the file whose shape allows it, so the plugins' own mistakes are
    reported too."""
    if settings is not None:
        return settings.queue, ([] if only_queue else list(enumerate(settings.chain)))
    queue = data.get("queue", {"sqlite": {}})
    queue = queue if isinstance(queue, dict) and len(queue) == 1 else None
    chain = data.get("chain", [])
    if only_queue or not isinstance(chain, list):
        return queue, []
    found = []
    for i, item in enumerate(chain):
        try:
            found += [(i, entry) for entry in chain_entries([item])]
        except ValueError:
            continue
    return queue, found


def load_config(path: str | Path | None = None, *, only_queue: bool = False) -> LoadedConfig:
    """Load and validate a config file (``None``: the embedded default); ConfigError listing every problem.

    ``only_queue`` (the queue, log, events and stats commands) reads only ``hostname``,
    ``state_dir`` and ``queue``: the chain is not validated (it comes back empty), so those
    commands work while a chain plugin's settings are wrong.
    """
    raw, source, base = read_yaml(Path(path) if path is not None else None)
    data = {k: v for k, v in raw.items() if k in QUEUE_KEYS} if only_queue else raw
    data, env_problems = substitute_env(data)
    problems: list[Problem] = []
    settings: Settings | None = None
    try:
        settings = Settings.model_validate(data, context={"base_dir": base})
    except ValidationError as exc:
        problems += configerrors.problems(exc, Settings)
    context = {"settings": settings, "base_dir": base}
    queue_entry, chain = _entries(data, settings, only_queue)
    queue: PluginSpec | None = None
    if queue_entry is not None:
        queue, found = _plugin_spec(queue_entry, ("queue",), context)
        problems += found
    specs: list[PluginSpec] = []
    for i, entry in chain:
        spec, found = _plugin_spec(entry, ("chain", i), context)
        problems += found
        if spec is not None:
            specs.append(spec)
    names = [spec.name for spec in specs]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        problems.append(Problem(("chain",), f"plugin {dup!r} is listed more than once; give each entry its own "
                                            f"name, e.g. - {dup}: {{name: {dup}-2, ...}}"))
    # A variable that is not set is the one problem at its key: what the unset value led to is not.
    problems = env_problems + [p for p in problems if not any(p.within(e.loc) for e in env_problems)]
    if problems or settings is None or queue is None:
        raise refuse(source, problems or [Problem(("queue",), "expected exactly one queue backend")])
    settings.state_dir = resolve(settings.state_dir, base)
    return LoadedConfig(settings, source, base, queue, specs, raw)
