"""How commands print: JSON for ``--json`` and UTC timestamps for people."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import click


def echo_json(data: Any) -> None:
    """Print ``data`` as indented JSON (what every ``--json`` prints); unknown types as their ``str``."""
    click.echo(json.dumps(data, indent=2, default=str))


def timestamp(t: float | None) -> str:
    """A Unix time as ``YYYY-MM-DD HH:MM:SS`` in UTC; ``-`` for none (0 or None)."""
    if not t:
        return "-"
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")
