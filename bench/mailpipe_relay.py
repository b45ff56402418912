"""``pipeline serve`` configured as a smarthost relay to one ``smtp-sink``, on loopback.

A generated YAML in a work dir: intake on ``127.0.0.1:PORT``, the sqlite queue
in the work dir (the default durability: WAL, synchronous=FULL, 250 after the
commit), ``delivery.concurrency: 20``, a chain of ``smarthost`` (no TLS) and
``retry``, log level warning. The process is the installed ``pipeline`` console
script next to ``sys.executable`` (or ``python -c`` of the same entry point).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml
from common import CLEANUP, BenchError, free_port, port_accepts, proc_status, stop_group, tail, wait_until


def pipeline_command() -> list[str]:
    script = Path(sys.executable).parent / "pipeline"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from mailpipe.core.cli import main; sys.exit(main())"]


class MailpipeRelay:
    """One ``pipeline serve -c WORKDIR/mailpipe.yaml`` process; ``peak_rss_kib()`` reads VmHWM."""

    def __init__(self, workdir: Path, sink_port: int, *, host: str = "127.0.0.1", port: int | None = None,
                 concurrency: int = 20, start_timeout: float = 30.0) -> None:
        self.workdir = Path(workdir)
        self.sink_port = sink_port
        self.host = host
        self.port = port or free_port(host)
        self.concurrency = concurrency
        self.start_timeout = start_timeout
        self.config_path = self.workdir / "mailpipe.yaml"
        self.log_file = self.workdir / "serve.log"
        self.db_path = self.workdir / "queue.sqlite3"
        self.proc: subprocess.Popen[bytes] | None = None
        self._cleanup_key: int | None = None

    def config(self) -> dict:
        return {
            "hostname": "mailpipe.bench.test",
            "state_dir": str(self.workdir / "state"),
            "listen": [f"{self.host}:{self.port}"],
            "relay": {"networks": ["127.0.0.0/8"]},
            "queue": {"sqlite": {"path": str(self.db_path)}},
            "delivery": {"send_immediately": True, "concurrency": self.concurrency, "shutdown_grace": "5s"},
            "chain": [
                {"smarthost": {"server": "127.0.0.1", "port": self.sink_port, "tls": "none"}},
                {"retry": {"every": "1m", "expire_after": "1h"}},
            ],
            "log": {"level": "warning"},
        }

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> MailpipeRelay:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(self.config(), sort_keys=False))
        with open(self.log_file, "wb") as log:
            self.proc = subprocess.Popen([*pipeline_command(), "serve", "-c", str(self.config_path)],
                                         stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True, cwd=self.workdir)
        self._cleanup_key = CLEANUP.add("pipeline serve", self.stop)
        wait_until(lambda: self.proc.poll() is not None or port_accepts(self.host, self.port),
                   self.start_timeout, f"pipeline serve on {self.host}:{self.port}",
                   lambda: tail(self.log_file))
        if self.proc.poll() is not None:
            raise BenchError(f"pipeline serve exited with {self.proc.returncode}:\n{tail(self.log_file)}")
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def peak_rss_kib(self) -> int | None:
        """The process's peak resident set size so far (VmHWM), in KiB."""
        if not self.alive():
            return None
        return proc_status(self.proc.pid).get("VmHWM")

    def log_tail(self) -> str:
        return tail(self.log_file)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            stop_group(self.proc.pid, timeout=15)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        if self._cleanup_key is not None:
            CLEANUP.done(self._cleanup_key)
            self._cleanup_key = None

    def __enter__(self) -> MailpipeRelay:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
