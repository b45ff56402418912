"""Shared fixtures: the real peers (tests/peers) and a ``pipeline serve`` subprocess factory."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.peers.mailpipe import MailpipeProcess
from tests.peers.net import free_port

pytest_plugins = ["tests.peers.fixtures"]


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A test folder that Postfix and Dovecot (other users) may traverse too."""
    os.chmod(tmp_path, 0o755)
    return tmp_path


@pytest.fixture
def mailpipe_factory(workdir: Path) -> Iterator[Callable[..., MailpipeProcess]]:
    """Make ``pipeline serve`` processes from a config dict; stopped at the end of the test."""
    made: list[MailpipeProcess] = []

    def make(config: dict[str, Any], *, name: str = "mailpipe", env: dict[str, str] | None = None) -> MailpipeProcess:
        config = {"state_dir": str(workdir / name / "state"), **config}
        config.setdefault("listen", [f"127.0.0.1:{free_port()}"])
        proc = MailpipeProcess(workdir / name, config, env=env)
        made.append(proc)
        return proc

    yield make
    with contextlib.ExitStack() as stack:  # every process is stopped even if one stop raises
        for proc in made:
            if proc.proc is not None and proc.proc.poll() is None:
                stack.callback(proc.stop)
