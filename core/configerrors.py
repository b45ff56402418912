"""pydantic's validation errors told in mailpipe's words, one ``Problem`` per key.

Called by the configuration loader (``config.py``) for the top-level settings and for each
plugin's options. pydantic's own sentences (``Input should be a valid integer, unable to parse
string as an integer``) never reach the user: each error type has a plain "expected ..." phrase,
a value the user wrote is quoted once (``got '5 minutez'``), several errors at one key (a value
that may be of several types) become one line, and an unknown key gets a "did you mean".
"""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from .configfile import Loc, Problem

_TYPE_TAGS = {"str", "int", "float", "bool", "bytes", "dict", "list", "none"}
_GOT = ("got ", "given ")
_SECRET_WORDS = ("password", "token", "secret", "dsn")


def _phrase(error: Any) -> str:
    """The plain "expected ..." sentence for one pydantic error (without the value)."""
    kind, ctx = error["type"], error.get("ctx") or {}
    simple = {
        "int_parsing": "expected a whole number", "int_type": "expected a whole number",
        "int_from_float": "expected a whole number", "float_parsing": "expected a number",
        "int_parsing_size": "expected a whole number of a sensible size",  # e.g. 9.2e18 for a port
        "float_type": "expected a number", "bool_parsing": "expected true or false",
        "bool_type": "expected true or false", "string_type": "expected text", "list_type": "expected a list",
        "dict_type": "expected a mapping (key: value)", "model_type": "expected a mapping (key: value)",
        "model_attributes_type": "expected a mapping (key: value)", "path_type": "expected a file or folder path",
        "none_required": "expected nothing (null)", "finite_number": "expected a finite number",
        "missing": "required, but not given", "ip_any_network": "expected a network such as 192.0.2.0/24",
        "ip_v4_network": "expected a network such as 192.0.2.0/24",
        "ip_v6_network": "expected a network such as 2001:db8::/32",
    }
    if kind in simple:
        return simple[kind]
    if kind in ("value_error", "assertion_error"):
        return str(error["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if kind in ("literal_error", "enum"):
        return f"expected one of {ctx.get('expected', '?')}"
    bounds = {"greater_than": "more than", "greater_than_equal": "at least", "less_than": "less than",
              "less_than_equal": "at most"}
    if kind in bounds:
        limit = next(iter(ctx.values()), "?")
        return f"expected a number {bounds[kind]} {limit}"
    if kind in ("too_short", "string_too_short"):
        return f"expected at least {ctx.get('min_length', 1)} item(s)" if kind == "too_short" else \
            f"expected at least {ctx.get('min_length', 1)} character(s)"
    if kind in ("too_long", "string_too_long"):
        return f"expected at most {ctx.get('max_length', '?')} item(s)"
    text = str(error["msg"])
    return text[:1].lower() + text[1:]


def _clean(loc: Loc, *, keep_last: bool = False) -> Loc:
    """The key path of an error without pydantic's validator and union-member tags (``keep_last``: the
    last part is the user's key, whatever it is, as for an unknown key)."""
    head, tail = (loc[:-1], loc[-1:]) if keep_last else (loc, ())
    return tuple(p for p in head if isinstance(p, int) or not (
        "[" in p or "-" in p or p in _TYPE_TAGS)) + tuple(tail)


def _model_at(model: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The options model that holds the keys at ``loc`` below ``model`` (None when it is not a model)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return None
        current = _model_in(fields[part].annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _model_in(annotation: Any) -> Any:
    """The first pydantic model inside a type (``X | None``, ``list[X]``, ``Annotated[X, ...]``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin is None and not isinstance(annotation, types.UnionType):
        return None
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def shown(value: Any) -> str:
    """A value as the user wrote it in YAML: ``true``, ``null``, ``'text'``, ``5``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return repr(value)


def did_you_mean(word: str, known: list[str]) -> str:
    """`` (did you mean 'hostname'?)`` for the nearest of ``known``, or the list of known words."""
    close = difflib.get_close_matches(word, known, n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (known: {', '.join(sorted(known))})" if known else ""


def _secret(model: type[BaseModel], loc: Loc) -> bool:
    """Whether the key at ``loc`` holds a secret: its value is never repeated in an error."""
    names = [p for p in loc if isinstance(p, str)]
    if names and any(word in names[-1].lower() for word in _SECRET_WORDS):
        return True
    parent = _model_at(model, loc[:-1]) if loc else None
    field = parent.model_fields.get(str(loc[-1])) if parent is not None else None
    return field is not None and "SecretStr" in str(field.annotation)


def _unknown_key(model: type[BaseModel], loc: Loc) -> str:
    if not loc:
        return "unknown key"
    parent = _model_at(model, loc[:-1])
    known = list(parent.model_fields) if parent is not None else []
    return "unknown key" + did_you_mean(str(loc[-1]), known)


def problems(err: ValidationError, model: type[BaseModel], prefix: Loc = ()) -> list[Problem]:
    """Every error of ``err`` (from validating ``model``) as problems at ``prefix`` + the key path.

    Errors at the same key are merged into one line ("expected true or false, or one of 'auto'").
    """
    by_loc: dict[Loc, list[Any]] = {}
    for error in err.errors():
        loc = _clean(tuple(error["loc"]), keep_last=error["type"] == "extra_forbidden")
        by_loc.setdefault(loc, []).append(error)
    out = []
    for loc, errors in by_loc.items():
        if errors[0]["type"] == "extra_forbidden":
            out.append(Problem(prefix + loc, _unknown_key(model, loc)))
            continue
        phrases = list(dict.fromkeys(_phrase(e) for e in errors))
        text = phrases[0] + "".join(", or " + p.removeprefix("expected ") for p in phrases[1:])
        value = errors[0].get("input")
        own_words = all(e["type"] in ("value_error", "assertion_error") for e in errors)
        if (not own_words and errors[0]["type"] != "missing" and not isinstance(value, dict | list)
                and not any(g in text for g in _GOT) and not _secret(model, loc)):
            text += f", got {shown(value)}"
            if isinstance(value, bool) and errors[0]["type"] in ("literal_error", "string_type"):
                text += " (YAML reads yes, no, on and off as true and false: put the word in quotes)"
        out.append(Problem(prefix + loc, text))
    return out
