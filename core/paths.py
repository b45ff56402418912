"""Where files are when the configuration does not say: the state folder, and paths relative to the file.

Standard library only, so the quick administration path (``core/adminqueue.py``) can use it.
"""

from __future__ import annotations

import os
from pathlib import Path


def default_state_dir() -> Path:
    """``$MAILPIPE_STATE_DIR``, else /var/lib/mailpipe for root, else ~/.local/state/mailpipe."""
    if env := os.environ.get("MAILPIPE_STATE_DIR"):
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/lib/mailpipe")
    return Path.home() / ".local" / "state" / "mailpipe"


def resolve(path: str | Path, base: Path) -> Path:
    """``path`` made absolute: ``~`` expanded, a relative path taken from ``base`` (the config file's folder)."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else base / p
