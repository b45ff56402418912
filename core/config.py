"""Loading configuration: YAML file -> ``${ENV}`` substitution -> pydantic -> plugin options.

Every mistake is refused before anything starts, as a ``ConfigError`` whose
text names the file, the key path (``chain[0].smarthost.port``) and what was
expected.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from .errors import ConfigError
from .plugin import Plugin
from .registry import load_plugin
from .settings import Settings
from .tlsfiles import server_tls_context

EMBEDDED = "<embedded default>"
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
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
    """A validated configuration ready to run."""

    settings: Settings
    source: str
    base_dir: Path
    queue: PluginSpec
    chain: list[PluginSpec]
    raw: dict[str, Any]


def key_path(loc: tuple[Any, ...] | list[Any]) -> str:
    """``('chain', 0, 'smarthost', 'port')`` -> ``chain[0].smarthost.port``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _format_validation(source: str, prefix: tuple[Any, ...], err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = [p for p in e["loc"] if not (isinstance(p, str) and ("function-" in p or p.startswith("[")))]
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif "input" in e and e["type"] not in ("missing",) and not isinstance(e["input"], dict | list):
            msg = f"{msg} (got {e['input']!r})"
        lines.append(f"{source}: {key_path(prefix + tuple(loc))}: {msg}")
    return "\n".join(lines)


def substitute_env(value: Any, source: str, loc: tuple[Any, ...] = ()) -> Any:
    """Replace ``${VAR}`` (or ``${VAR:-default}``) in every string of the tree."""
    if isinstance(value, dict):
        return {k: substitute_env(v, source, loc + (k,)) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute_env(v, source, loc + (i,)) for i, v in enumerate(value)]
    if isinstance(value, str) and "${" in value:

        def repl(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            raise ConfigError(f"{source}: {key_path(loc)}: environment variable {name} is not set")

        return _ENV.sub(repl, value)
    return value


def read_yaml(path: Path | None) -> tuple[dict[str, Any], str, Path]:
    """Read the config file (or the embedded default when ``path`` is None)."""
    if path is None:
        text = resources.files("mailpipe.core").joinpath("default.yaml").read_text()
        source, base = EMBEDDED, Path.cwd()
    else:
        source, base = str(path), Path(path).resolve().parent
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read config file: {exc.strerror or exc}") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{source}: not a UTF-8 text file ({exc.reason})") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{source}: not valid YAML{where}: {problem}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of settings at the top level, got {type(data).__name__}")
    return data, source, base


def _plugin_spec(
    entry: dict[str, Any], loc: tuple[Any, ...], source: str, settings: Settings | None = None
) -> PluginSpec:
    (name, options), = entry.items()
    try:
        cls = load_plugin(str(name))
    except ConfigError as exc:
        raise ConfigError(f"{source}: {key_path(loc)}: {exc}") from exc
    instance = str(name)
    if isinstance(options, dict) and "name" in options and "name" not in cls.Options.model_fields:
        options = dict(options)
        given = options.pop("name")
        if not isinstance(given, str) or not ENTRY_NAME.fullmatch(given):
            raise ConfigError(f"{source}: {key_path(loc + (name, 'name'))}: expected an entry name of letters, "
                              f"digits, '.', '_' and '-' such as smarthost-big, got {given!r}")
        instance = given
    try:
        # The context lets a plugin check its options against the rest of the config (e.g. accounts).
        validated = cls.Options.model_validate(options or {}, context={"settings": settings})
    except ValidationError as exc:
        raise ConfigError(_format_validation(source, loc + (name,), exc)) from exc
    return PluginSpec(instance, cls, validated, key_path(loc + (name,)), str(name))


def _check_listeners(settings: Settings, source: str, base: Path) -> None:
    """Resolve listener certificate paths and load them now, so a bad file is a config error."""
    for i, spec in enumerate(settings.listen):
        if spec.tls == "none":
            continue
        spec.cert = spec.cert if spec.cert is None or spec.cert.is_absolute() else base / spec.cert
        spec.key = spec.key if spec.key is None or spec.key.is_absolute() else base / spec.key
        try:
            server_tls_context(spec)
        except ConfigError as exc:
            raise ConfigError(f"{source}: listen[{i}]: {exc}") from exc


def load_config(path: str | Path | None = None) -> LoadedConfig:
    """Load and validate a config file (``None``: the embedded default)."""
    raw, source, base = read_yaml(Path(path) if path is not None else None)
    data = substitute_env(raw, source)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation(source, (), exc)) from exc
    if not settings.state_dir.is_absolute():
        settings.state_dir = base / settings.state_dir
    _check_listeners(settings, source, base)
    queue = _plugin_spec(settings.queue, ("queue",), source)
    chain = [_plugin_spec(entry, ("chain", i), source, settings) for i, entry in enumerate(settings.chain)]
    names = [c.name for c in chain]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        raise ConfigError(f"{source}: chain: plugin {dup!r} is listed more than once; give each entry its "
                          f"own name, e.g. - {dup}: {{name: {dup}-2, ...}}")
    return LoadedConfig(settings, source, base, queue, chain, raw)
