"""What the quick commands import: the queue and log commands open the queue without pydantic.

Timing is measured in bench (``bench/cli_speed.py``), not here; this test pins the reason they are
quick: ``--version`` loads the CLI alone, and the queue and log commands on a plain sqlite
configuration load neither pydantic, nor any chain plugin, nor the gateway, nor sqlite-utils.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import base_config, store_messages, write

HEAVY = ("pydantic", "aiosmtpd", "aiosmtplib", "uvloop", "sqlite_utils", "starlette", "uvicorn")


def loaded(*args: str) -> tuple[list[str], str]:
    """The heavy modules ``pipeline ARGS`` imported (run in a fresh interpreter), and what it printed."""
    probe = "\n".join([
        "import sys",
        "from mailpipe.core.cli import main",
        "try:",
        f"    main({list(args)!r})",
        "except SystemExit:",
        "    pass",
        f"heavy = {HEAVY!r}",
        "print('LOADED', sorted(m for m in sys.modules if m.split('.')[0] in heavy or m == 'mailpipe.core.config'",
        "      or m.startswith(('mailpipe.core.gateway', 'mailpipe.plugins.smarthost', 'mailpipe.plugins.retry',",
        "                       'mailpipe.plugins.sqlite_queue.plugin'))))",
    ])
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    out = res.stdout
    return eval(out.rsplit("LOADED ", 1)[1]), out  # noqa: S307 - our own probe's list of names


def test_version_loads_the_cli_alone() -> None:
    found, out = loaded("--version")
    assert out.startswith("mailpipe ") and found == []


@pytest.mark.parametrize("command", [["queue", "list"], ["queue", "show", "ID"], ["queue", "cat", "ID"], ["log"],
                                     ["events"], ["stats"], ["queue", "hold", "ID"]])
def test_queue_commands_open_the_queue_without_pydantic(command: list[str], tmp_path: Path) -> None:
    path = write(tmp_path / "mailpipe.yaml", base_config(tmp_path))
    [mid] = store_messages(path, [["bob@example.net"]])
    found, out = loaded("-c", str(path), *[mid if w == "ID" else w for w in command])
    assert found == [], out
