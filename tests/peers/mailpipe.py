"""``pipeline serve`` as a real subprocess, the way an administrator runs it (tests and bench alike)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from .net import port_accepts, read_log, wait_until
from .service import Service


def pipeline_cmd(*args: str) -> list[str]:
    """The ``pipeline`` console script of this environment."""
    return [str(Path(sys.executable).with_name("pipeline")), *args]


def run_pipeline(
    config: Path | None,
    *args: str,
    check: bool = True,
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run one ``pipeline`` command and return its result (stdout, stderr, returncode)."""
    cmd = pipeline_cmd(*args) + (["-c", str(config)] if config else [])
    res = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )
    if check and res.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} exited {res.returncode}\nstdout:\n{res.stdout}\nstderr:\n{res.stderr}"
        )
    return res


class MailpipeProcess(Service):
    """``pipeline serve -c FILE`` in the background, its log in ``log_path``.

    ``start()`` returns once the first listener accepts connections. ``new_session``
    runs it in a session of its own (a Ctrl-C at the terminal does not reach it).
    """

    def __init__(self, workdir: Path, config: dict[str, Any], *, env: dict[str, str] | None = None,
                 new_session: bool = False) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / "mailpipe.yaml"
        self.config = config
        self.env = env or {}
        self.new_session = new_session
        self.log_path = workdir / "serve.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.write_config(config)

    def write_config(self, config: dict[str, Any]) -> None:
        """Write a new config; ``listen`` and ``state_dir`` carry over from the last one if not given.

        ``workers`` defaults to ``$MAILPIPE_TEST_WORKERS`` or 1: the suite pins one process's behaviour
        (one scheduler, one event per start, its log lines); tests/workers/ run several on purpose.
        """
        previous = getattr(self, "config", {}) or {}
        config = {**{k: previous[k] for k in ("state_dir", "listen") if k in previous}, **config}
        config.setdefault("workers", os.environ.get("MAILPIPE_TEST_WORKERS", 1))
        self.config = config
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    @property
    def address(self) -> tuple[str, int]:
        first = self.config["listen"][0]
        text = first if isinstance(first, str) else first["address"]
        host, _, port = text.rpartition(":")
        return host.strip("[]"), int(port)

    def start(self, timeout: float = 20.0) -> MailpipeProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(
            pipeline_cmd("serve", "-c", str(self.config_path)),
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.env},
            cwd=self.workdir,
            start_new_session=self.new_session,
        )
        log.close()
        self._started(f"pipeline serve in {self.workdir}")
        host, port = self.address
        wait_until(
            lambda: port_accepts(host, port) or self.proc.poll() is not None,
            timeout,
            f"pipeline serve listening on {host}:{port}",
            self.log_text,
        )
        if self.proc.poll() is not None:
            raise AssertionError(f"pipeline serve exited {self.proc.returncode}:\n{self.log_text()}")
        return self

    @property
    def pid(self) -> int | None:
        """The process id of the last ``pipeline serve`` started (None before ``start()``)."""
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        """True while the process started last is running."""
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        """Everything ``pipeline serve`` has written to its log (every start appends to it)."""
        return read_log(self.log_path)

    def stop(self, timeout: float = 40.0) -> int:
        """SIGTERM and wait; returns the exit status (SIGKILL after ``timeout``, and TimeoutExpired is raised)."""
        if self.proc is None:
            return 0
        self._stopped()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)

    def kill(self) -> None:
        """SIGKILL: no chance to clean up (the durability tests)."""
        self._stopped()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``pipeline ARGS -c FILE`` against this gateway's config (see :func:`run_pipeline`)."""
        return run_pipeline(self.config_path, *args, check=check, env=self.env)

    def cli_json(self, *args: str) -> Any:
        """``cli(*args, "--json")``, parsed."""
        return json.loads(self.cli(*args, "--json").stdout)

    def __exit__(self, *exc: object) -> None:
        if self.alive():
            self.stop()
