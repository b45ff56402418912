"""Reading a configuration file: YAML with duplicate keys refused, then ``${ENV}`` substitution.

The first half of loading a configuration (``config.py`` validates what this returns). It
uses PyYAML and the standard library only, so the administration commands that need no more
than the queue read the file through here without importing pydantic (``adminqueue.py``).

A mistake is a ``Problem``: where (a key path) and what, in plain words. Everything wrong
with a file is collected and reported at once, one line per problem.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

EMBEDDED = "<embedded default>"
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_MERGE = "tag:yaml.org,2002:merge"
Loc = tuple[Any, ...]


def key_path(loc: Loc | list[Any]) -> str:
    """``('chain', 0, 'smarthost', 'port')`` -> ``chain[0].smarthost.port``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a configuration: the key path it is at and what is wrong.

    ``loc`` is empty for problems of the whole file (YAML syntax); ``line`` is the file's line
    when known (duplicate keys).
    """

    loc: Loc
    text: str
    line: int | None = None

    def render(self, source: str) -> str:
        """``<file>: <key path>: <text>`` on one line (what ``error:`` lines show)."""
        where = f"line {self.line}: " if self.line is not None else ""
        where += f"{key_path(self.loc)}: " if self.loc else ""
        return " ".join(f"{source}: {where}{self.text}".split())

    def within(self, loc: Loc) -> bool:
        """Whether this problem is at ``loc`` or below it."""
        return self.loc[: len(loc)] == loc


def refuse(source: str, problems: list[Problem]) -> ConfigError:
    """The ``ConfigError`` for ``problems``: one line per problem, in file order as found."""
    lines = list(dict.fromkeys(p.render(source) for p in problems))
    return ConfigError("\n".join(lines))


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """PyYAML's safe loader that notes every key given twice in one mapping (safe_load keeps the last)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[Problem] = []

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == _MERGE or not isinstance(key_node, yaml.ScalarNode):
                    continue
                key = self.construct_object(key_node)
                line = key_node.start_mark.line + 1
                if key in seen:
                    self.duplicates.append(Problem((), f"key {key!r} is given twice (first at line {seen[key]}); "
                                                        "remove one", line))
                else:
                    seen[key] = line
        return super().construct_mapping(node, deep)  # type: ignore[no-any-return]


def parse_yaml(text: str, source: str) -> Any:
    """The data of a YAML document; ConfigError for bad syntax or keys given twice."""
    loader = _Loader(text)
    try:
        data = loader.get_single_data()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise refuse(source, [Problem((), f"not valid YAML{where}: {problem}")]) from exc
    finally:
        loader.dispose()
    if loader.duplicates:
        raise refuse(source, loader.duplicates)
    return data


def read_yaml(path: Path | None) -> tuple[dict[str, Any], str, Path]:
    """Read the config file (or the embedded default when ``path`` is None): data, source name, folder."""
    if path is None:
        from importlib import resources

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
    data = parse_yaml(text, source)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of settings at the top level, got {type(data).__name__}")
    return data, source, base


def substitute_env(value: Any, loc: Loc = ()) -> tuple[Any, list[Problem]]:
    """Replace ``${VAR}`` (or ``${VAR:-default}``) in every string of the tree.

    Returns the new tree and one problem per variable that is not set and has no default (all
    of them, not just the first); such a reference stays as written.
    """
    problems: list[Problem] = []

    def walk(node: Any, where: Loc) -> Any:
        if isinstance(node, dict):
            return {k: walk(v, where + (k,)) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, where + (i,)) for i, v in enumerate(node)]
        if isinstance(node, str) and "${" in node:

            def repl(m: re.Match[str]) -> str:
                name, default = m.group(1), m.group(2)
                if name in os.environ:
                    return os.environ[name]
                if default is not None:
                    return default
                problems.append(Problem(where, f"environment variable {name} is not set"))
                return m.group(0)

            return _ENV.sub(repl, node)
        return node

    return walk(value, loc), problems
