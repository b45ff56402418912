"""The installed distributions' metadata files, read directly: quick answers for quick commands.

``importlib.metadata`` is the reference (``registry.py`` uses it) but importing it costs more
than the rest of ``pipeline --version`` or ``pipeline queue list``. These two questions are
answered here by reading the ``*.dist-info`` (and ``*.egg-info``) folders on ``sys.path`` in
order, the first found winning as with ``importlib.metadata``; None means "not found here",
and the caller then asks ``importlib.metadata``.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator

_VERSION = re.compile(r"^Version:\s*(\S+)", re.M)


def _folders() -> Iterator[str]:
    for entry in sys.path:
        base = entry or "."
        try:
            names = sorted(os.listdir(base))
        except OSError:
            continue
        for name in names:
            if name.endswith((".dist-info", ".egg-info")):
                yield os.path.join(base, name)


def _read(path: str, limit: int = 1 << 16) -> str | None:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read(limit)
    except OSError:
        return None


def version(distribution: str) -> str | None:
    """The ``Version:`` of the installed ``distribution`` (its folder name, as pip writes it), or None."""
    wanted = re.sub(r"[-_.]+", "_", distribution).lower()
    for folder in _folders():
        if re.sub(r"[-_.]+", "_", os.path.basename(folder).split("-", 1)[0]).lower() == wanted:
            text = _read(os.path.join(folder, "METADATA")) or _read(os.path.join(folder, "PKG-INFO")) or ""
            found = _VERSION.search(text)
            if found:
                return found.group(1)
    return None


def entry_point_module(group: str, name: str) -> str | None:
    """The module of entry point ``name`` in ``group`` (``module:attr [extras]`` -> ``module``), or None."""
    for folder in _folders():
        text = _read(os.path.join(folder, "entry_points.txt"))
        if not text:
            continue
        section = ""
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("[") and line.endswith("]"):
                section = line[1:-1].strip()
            elif section == group and "=" in line and not line.startswith(("#", ";")):
                key, _, value = line.partition("=")
                if key.strip() == name:
                    return value.split(":", 1)[0].strip()
    return None
