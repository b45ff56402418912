"""The WHERE clauses the SQL backends build alike: message log, event levels, queue list.

Each takes a ``Dialect`` (how the backend's driver writes a parameter and a comparison that
ignores case) and returns the clause with its parameters, for the backend's own SELECT.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True)
class Dialect:
    """How one backend's SQL writes what the shared filters need.

    ``param``: the driver's placeholder (``?`` for sqlite3, ``%s`` for psycopg);
    ``same_text``: a column equal to a parameter in any case, ``{column}`` standing for the
    column (``{column} = ? COLLATE NOCASE``, ``lower({column}) = lower(%s)``).
    """

    param: str
    same_text: str


def attempt_filter(dialect: Dialect, filters: dict[str, Any]) -> tuple[str, list[Any]]:
    """``WHERE ...`` (or "") and its parameters for the message log filtered as ``QueueAdmin.attempts`` says:
    by message, sender, recipient (any case), since, outcome (or action)."""
    p = dialect.param
    clauses: list[str] = []
    params: list[Any] = []
    for key, column in (("message", "message_id"), ("sender", "sender"), ("recipient", "recipient")):
        if filters.get(key) is not None:
            clauses.append(dialect.same_text.format(column=column))
            params.append(filters[key])
    if filters.get("outcome"):
        clauses.append(f"(outcome = {p} OR action = {p})")
        params += [filters["outcome"], filters["outcome"]]
    if filters.get("since") is not None:
        clauses.append(f"time >= {p}")
        params.append(filters["since"])
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", params


def levels_from(level: str) -> list[str]:
    """The event levels shown for ``level``: it and those above it (an unknown level: itself only)."""
    return list(LEVELS[LEVELS.index(level):]) if level in LEVELS else [level]


def summary_filter(dialect: Dialect, state: str | None) -> tuple[str, list[Any]]:
    """``WHERE ...`` on ``messages m`` for ``QueueAdmin.list``: messages with a recipient in ``state``,
    or (no state) those not finished; with its parameters."""
    if state:
        return f"WHERE m.id IN (SELECT message_id FROM recipients WHERE state = {dialect.param})", [state]
    return "WHERE m.done_at IS NULL", []

