"""What the administration tests share: writing configurations, running ``pipeline`` in-process or for real."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner, Result

from mailpipe.core.cli import main
from mailpipe.core.config import load_config
from mailpipe.core.events import Event
from mailpipe.core.ids import new_queue_id
from mailpipe.core.message import Message, Recipient, SessionInfo
from mailpipe.core.runtime import open_queue
from tests.core.helpers import make_message
from tests.peers.net import free_port


def write(path: Path, data: dict[str, Any] | str) -> Path:
    """Write a configuration file (a mapping as YAML, or text as it is); returns its path."""
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def base_config(tmp: Path, chain: list[Any] | None = None, **top: Any) -> dict[str, Any]:
    """A valid configuration on a free port with its state under ``tmp``; ``chain`` defaults to smarthost+retry."""
    return {"hostname": "gw.test", "listen": [f"127.0.0.1:{free_port()}"], "state_dir": str(tmp / "state"),
            "chain": chain if chain is not None else [
                {"smarthost": {"server": "127.0.0.1", "port": free_port(), "tls": "none"}},
                {"retry": {"every": "15m", "expire_after": "2d"}}],
            **top}


def invoke(*args: str) -> Result:
    """``pipeline ARGS`` in this process (click's runner): exit code, stdout and stderr kept apart.

    An exception that escaped the command (a traceback for the user) is in ``result.exception``.
    """
    return CliRunner().invoke(main, list(args))


def escaped(result: Result) -> BaseException | None:
    """The exception a command let escape (what would print a traceback), or None."""
    exc = result.exception
    return None if exc is None or isinstance(exc, SystemExit) else exc


def store_messages(config_path: Path, recipients: list[list[str]], sender: str = "alice@example.org") -> list[str]:
    """Store one message per recipient list straight into the configuration's queue (created if needed)."""

    async def store() -> list[str]:
        queue = await open_queue(load_config(config_path, only_queue=True))
        ids = []
        try:
            for n, rcpts in enumerate(recipients):
                data = make_message(f"admin {n}")
                message = Message(new_queue_id(), sender, [Recipient(r) for r in rcpts], time.time(),
                                  size=len(data), session=SessionInfo("127.0.0.1", "client.test"))
                await queue.store(message, data)
                ids.append(message.id)
            queue.add_event(Event(time.time(), "test.stored", f"{len(ids)} message(s) stored by the test"))
        finally:
            await queue.close()
        return ids

    return asyncio.run(store())
