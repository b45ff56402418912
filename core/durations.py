"""Durations (``30s``, ``15m``, ``4h``, ``2d``, ``1h30m``) and sizes (``10M``, ``512K``)."""

from __future__ import annotations

import re

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "m": 1024**2, "mb": 1024**2, "g": 1024**3, "gb": 1024**3}
_SIZE = re.compile(r"^\s*(\d+)\s*([kmg]?b?)\s*$", re.IGNORECASE)


def parse_duration(value: object) -> float:
    """Return seconds for a duration written ``30s``, ``15m``, ``4h``, ``2d``, ``1w`` or ``1h30m``.

    Plain numbers are seconds. Raises ValueError with what was expected.
    """
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 15m, 4h or 2d")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        if text and _PART.sub("", text) == "":
            return float(sum(float(n) * _UNITS[u] for n, u in _PART.findall(text)))
        if re.fullmatch(r"\d+(\.\d+)?", text):
            return float(text)
    raise ValueError(f"expected a duration such as 30s, 15m, 4h or 2d, got {value!r}")


def format_duration(seconds: float) -> str:
    """Write seconds back in the shortest unit that is exact (``900`` -> ``15m``)."""
    for unit in ("w", "d", "h", "m"):
        size = _UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def human_duration(seconds: float) -> str:
    """``216000`` -> ``2 days 12 hours``: the two largest units, for people (reports, ``pipeline stats``)."""
    left = int(round(seconds))
    parts = []
    for name, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        n, left = divmod(left, size)
        if n:
            parts.append(f"{n} {name}{'s' if n != 1 else ''}")
    return " ".join(parts[:2]) or "0 seconds"


def parse_size(value: object) -> int:
    """Return bytes for a size written ``10M``, ``512K``, ``1G`` or a plain number."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        m = _SIZE.match(value)
        if m:
            return int(m.group(1)) * _SIZE_UNITS[m.group(2).lower()]
    raise ValueError(f"expected a size such as 10M, 512K or a number of bytes, got {value!r}")
