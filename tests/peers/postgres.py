"""A private PostgreSQL cluster (Debian's ``postgresql-15``) on a loopback address and a free port.

``initdb`` + ``pg_ctl`` run as the ``postgres`` user in a temp dir of their own: the cluster's
data, its log and its Unix socket folder are all there, it listens on ``host:port`` only and
trusts loopback clients. It is stopped by the postmaster's PID (SIGINT: fast shutdown;
SIGQUIT: the crash of ``kill(immediate=True)``), never through the system's cluster tools.
Installed by ``.ci/install-postgres.sh``; the system cluster is never started.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

from .net import (
    PeerError,
    free_port,
    make_traversable,
    pid_alive,
    port_accepts,
    process_start_ticks,
    read_log,
    tail,
    wait_until,
)

BIN = Path("/usr/lib/postgresql/15/bin")
PG_USER = "postgres"

_running: set[PostgresPeer] = set()


def available() -> str | None:
    """Why a private cluster cannot run here (None when it can): the server or its user is missing."""
    if not (BIN / "initdb").exists() or not (BIN / "pg_ctl").exists():
        return f"PostgreSQL 15 server not installed ({BIN}); run .ci/install-postgres.sh"
    try:
        pwd.getpwnam(PG_USER)
    except KeyError:
        return "no postgres user; run .ci/install-postgres.sh"
    if os.geteuid() != 0:
        return "starting a private cluster as the postgres user needs root"
    return None


class PostgresPeer:
    """A private PostgreSQL server; use as a context manager or call :meth:`start` and :meth:`stop`.

    ``dsn(database)`` is a libpq URI for a database on it (user ``postgres``, no password:
    loopback clients are trusted); ``create_database()`` makes a fresh one per test.
    ``settings`` are extra ``postgresql.conf`` lines.
    """

    def __init__(self, workdir: Path, *, host: str = "127.0.0.1", port: int = 0,
                 settings: dict[str, str] | None = None, start_timeout: float = 60.0) -> None:
        self.workdir = Path(workdir)
        self.host = host
        self.port = port or free_port(host)
        self.settings = {"max_connections": "200", "shared_buffers": "64MB", **(settings or {})}
        self.start_timeout = start_timeout
        self.data_dir = self.workdir / "data"
        self.socket_dir = self.workdir / "run"
        self.log_file = self.workdir / "postgres.log"
        self.pid: int | None = None
        self._pid_ticks: int | None = None
        self._databases = 0

    # -- life -----------------------------------------------------------------------------------

    def start(self) -> PostgresPeer:
        """Create the cluster (the first time) and start it; returns once it accepts connections."""
        if self.pid is not None:
            raise PeerError(f"PostgreSQL in {self.workdir} is already running")
        reason = available()
        if reason:
            raise PeerError(reason)
        if not self.data_dir.exists():
            self._initdb()
        self._as_postgres([str(BIN / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_file),
                           "-w", "-t", str(int(self.start_timeout)), "start"], "pg_ctl start")
        pid_file = self.data_dir / "postmaster.pid"
        self.pid = int(pid_file.read_text().split()[0])
        self._pid_ticks = process_start_ticks(self.pid)
        _running.add(self)
        wait_until(lambda: port_accepts(self.host, self.port), self.start_timeout,
                   f"PostgreSQL on {self.host}:{self.port}", self._log_tail)
        return self

    def stop(self, *, immediate: bool = False, timeout: float = 30.0) -> None:
        """Stop the postmaster by its PID (fast shutdown, or immediate: a crash); safe to call twice."""
        pid, self.pid = self.pid, None
        _running.discard(self)
        if pid is None or not pid_alive(pid, self._pid_ticks):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGQUIT if immediate else signal.SIGINT)
        try:
            wait_until(lambda: not pid_alive(pid, self._pid_ticks), timeout, f"postmaster {pid} to exit",
                       self._log_tail)
        except PeerError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            wait_until(lambda: not pid_alive(pid, self._pid_ticks), timeout, f"postmaster {pid} to exit (KILL)")
        # An immediate stop leaves children to finish their exit; the next start waits for the port anyway.
        wait_until(lambda: not port_accepts(self.host, self.port), timeout, f"port {self.port} to close")

    def restart(self, *, immediate: bool = False) -> None:
        """Stop (fast, or immediate: crash recovery at the next start) and start again on the same port."""
        self.stop(immediate=immediate)
        self.start()

    def remove(self) -> None:
        """Stop and delete the cluster's folder."""
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> PostgresPeer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- databases -------------------------------------------------------------------------------

    def dsn(self, database: str = "postgres", *, user: str = PG_USER, password: str | None = None,
            host: str | None = None, port: int | None = None) -> str:
        """A libpq URI for ``database`` (``host``/``port`` override the server's, e.g. a proxy in front)."""
        login = quote(user) + (f":{quote(password)}" if password else "")
        return f"postgresql://{login}@{host or self.host}:{port or self.port}/{quote(database)}"

    def sql(self, statement: str, database: str = "postgres") -> str:
        """Run one SQL statement with ``psql`` as the superuser; its output (unaligned, tuples only)."""
        res = subprocess.run(
            [str(BIN.parent / "bin" / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
             "-d", self.dsn(database), "-c", statement],
            capture_output=True, text=True, timeout=60,
        )
        if res.returncode != 0:
            raise PeerError(f"psql {statement!r} failed: {res.stderr.strip()}")
        return res.stdout.strip()

    def create_database(self, prefix: str = "mailpipe") -> str:
        """A fresh empty database; returns its DSN."""
        self._databases += 1
        name = f"{prefix}_{os.getpid()}_{self._databases}_{time.monotonic_ns() % 10**9}"
        self.sql(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def log_text(self) -> str:
        """Everything the server logged so far."""
        return read_log(self.log_file)

    # -- internals --------------------------------------------------------------------------------

    def _log_tail(self) -> str:
        return f"PostgreSQL log tail ({self.log_file}):\n{tail(self.log_file)}"

    def _as_postgres(self, argv: list[str], what: str) -> None:
        res = subprocess.run(["runuser", "-u", PG_USER, "--", *argv], capture_output=True, text=True,
                             timeout=self.start_timeout + 30, cwd="/")
        if res.returncode != 0:
            raise PeerError(f"{what} failed ({res.returncode}):\n{res.stdout}{res.stderr}\n{self._log_tail()}")

    def _initdb(self) -> None:
        make_traversable(self.workdir)
        self.socket_dir.mkdir(exist_ok=True)
        entry = pwd.getpwnam(PG_USER)
        for path in (self.workdir, self.socket_dir):
            os.chown(path, entry.pw_uid, entry.pw_gid)
        self._as_postgres([str(BIN / "initdb"), "-D", str(self.data_dir), "-A", "trust", "-U", PG_USER,
                           "--no-sync", "-E", "UTF8", "--locale=C.UTF-8"], "initdb")
        conf = {"listen_addresses": f"'{self.host}'", "port": str(self.port),
                "unix_socket_directories": f"'{self.socket_dir}'", "fsync": "on", "synchronous_commit": "on",
                **self.settings}
        with open(self.data_dir / "postgresql.conf", "a") as f:
            f.write("\n# tests/peers/postgres.py\n")
            f.writelines(f"{key} = {value}\n" for key, value in conf.items())
        with open(self.data_dir / "pg_hba.conf", "a") as f:
            f.write("host all all 127.0.0.0/8 trust\n")


@atexit.register
def _stop_all() -> None:
    for peer in list(_running):
        with contextlib.suppress(Exception):
            peer.stop()
