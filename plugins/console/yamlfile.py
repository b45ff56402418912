"""Editing the config file in place: round-trip YAML (comments, order, quotes kept) and atomic writes.

``load`` picks the indentation that reproduces the file exactly, so only the
keys a form changed differ after ``dump``. ``write_atomic`` writes a temporary
file beside the original, fsyncs it, renames it over the original (keeping its
mode) and fsyncs the folder: a crash leaves the old file or the new one, never
half of one.
"""

from __future__ import annotations

import difflib
import hashlib
import io
import os
import tempfile
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

_INDENTS = [(m, s, o) for m in (2, 4) for s, o in ((2, 0), (4, 2), (3, 1), (4, 0))]


def _yaml(indent: tuple[int, int, int]) -> YAML:
    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.width = 4096
    y.indent(mapping=indent[0], sequence=indent[1], offset=indent[2])
    return y


class RoundTrip:
    """A YAML document loaded for editing, with the indentation of its file."""

    def __init__(self, text: str) -> None:
        self.text = text
        best: tuple[int, tuple[int, int, int]] | None = None
        for indent in _INDENTS:
            out = self._dump_with(indent, _yaml(indent).load(text))
            changed = sum(1 for line in difflib.ndiff(text.splitlines(), out.splitlines()) if line[:1] in "+-")
            if best is None or changed < best[0]:
                best = (changed, indent)
            if changed == 0:
                break
        assert best is not None
        self.indent = best[1]
        self.doc: Any = _yaml(self.indent).load(text)
        if self.doc is None:
            self.doc = _yaml(self.indent).load("{}\n")

    @staticmethod
    def _dump_with(indent: tuple[int, int, int], doc: Any) -> str:
        out = io.StringIO()
        _yaml(indent).dump(doc, out)
        return out.getvalue()

    def dump(self) -> str:
        """The document as text, in the file's own indentation."""
        return self._dump_with(self.indent, self.doc)


def digest(text: str) -> str:
    """A short fingerprint of the file's content (to notice edits made meanwhile)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def temp_beside(path: Path, text: str) -> Path:
    """Write ``text`` to a new temporary file in ``path``'s folder (same mode as ``path``), fsynced."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if path.exists():
            os.chmod(name, path.stat().st_mode & 0o7777)
    except BaseException:
        os.unlink(name)
        raise
    return Path(name)


def replace_atomic(temp: Path, path: Path) -> None:
    """Rename a temporary file made by ``temp_beside`` over ``path`` and fsync the folder."""
    os.replace(temp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path``'s content with ``text`` atomically."""
    replace_atomic(temp_beside(path, text), path)
