"""A refresh token kept in a file: read before each refresh, a rotated one written back atomically (0600)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def read_token(path: Path) -> str:
    """The first non-empty line of ``path``; raises ``OSError`` or ``ValueError`` (empty file)."""
    for line in path.read_text().splitlines():
        if line.strip():
            return line.strip()
    raise ValueError(f"refresh token file {path} is empty")


def write_token(path: Path, token: str) -> None:
    """Replace ``path`` by a file holding ``token`` (mode 0600): written to a temporary file in the same
    folder, flushed to disk and renamed over the old one, so a crash leaves the old token or the new one."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(token + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # the rename itself on stable storage
        dirfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dirfd)
        finally:
            os.close(dirfd)
