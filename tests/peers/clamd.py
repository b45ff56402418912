"""A private ClamAV daemon (Debian's ``clamav-daemon``) with a signature database made for the tests.

No ``freshclam`` (there is no network): the database folder holds one hash signature file with
the EICAR test file (``Eicar-Test-Signature``, reported as ``Eicar-Test-Signature.UNOFFICIAL``),
so clamd starts in seconds and detects EICAR as such, inside MIME parts and inside archives. The
daemon listens on its own Unix socket and on a loopback TCP port, runs in the foreground as the
``clamav`` user (when started as root), and is stopped by its PID. ``freeze``/``thaw`` stop and
continue it (SIGSTOP/SIGCONT): a clamd that accepts connections and never answers.
Installed by ``.ci/install-clamav.sh``; the system's clamav-daemon is never started.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import pwd
import signal
import socket
import subprocess
from pathlib import Path

from .net import (
    PeerError,
    free_port,
    make_traversable,
    pid_alive,
    process_start_ticks,
    read_log,
    tail,
    wait_until,
)
from .tcp import read_until

CLAMD = Path("/usr/sbin/clamd")
CLAM_USER = "clamav"

#: The EICAR anti-virus test file (68 bytes): every scanner reports it, it harms nothing.
EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
SIGNATURE = "Eicar-Test-Signature"

_running: set[ClamdPeer] = set()


def available() -> str | None:
    """Why a private clamd cannot run here (None when it can)."""
    if not CLAMD.exists():
        return f"clamd not installed ({CLAMD}); run .ci/install-clamav.sh"
    try:
        pwd.getpwnam(CLAM_USER)
    except KeyError:
        return "no clamav user; run .ci/install-clamav.sh"
    return None


def ask(address: str | tuple[str, int], command: bytes, timeout: float = 5.0) -> bytes:
    """Send one ``z``-command (``b"zPING\\0"``) to clamd at a socket path or (host, port); its reply."""
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(address)
        s.sendall(command)
        return read_until(s, b"\0").rstrip(b"\0")


class ClamdPeer:
    """A private clamd; use as a context manager or call :meth:`start` and :meth:`stop`.

    ``socket_path`` and ``address`` (``host:port``) are where it listens; ``settings`` are
    extra ``clamd.conf`` lines (e.g. ``{"MaxScanTime": "2000"}``).
    """

    def __init__(self, workdir: Path, *, host: str = "127.0.0.1", port: int = 0,
                 settings: dict[str, str] | None = None, start_timeout: float = 120.0) -> None:
        self.workdir = Path(workdir)
        self.host = host
        self.port = port or free_port(host)
        self.settings = settings or {}
        self.start_timeout = start_timeout
        self.db_dir = self.workdir / "db"
        self.socket_path = str(self.workdir / "clamd.sock")
        self.config_file = self.workdir / "clamd.conf"
        self.log_file = self.workdir / "clamd.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._ticks: int | None = None

    @property
    def address(self) -> str:
        """``host:port`` of the TCP listener."""
        return f"{self.host}:{self.port}"

    # -- life -----------------------------------------------------------------------------------

    def start(self) -> ClamdPeer:
        """Write the config and database, start clamd; returns once it answers PING on both sockets."""
        reason = available()
        if reason:
            raise PeerError(reason)
        self._prepare()
        output = open(self.workdir / "clamd.out", "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen([str(CLAMD), "--foreground", f"--config-file={self.config_file}"],
                                     stdout=output, stderr=subprocess.STDOUT, cwd=self.workdir)
        output.close()
        self._ticks = process_start_ticks(self.proc.pid)
        _running.add(self)
        wait_until(lambda: self._answers() or self.proc.poll() is not None, self.start_timeout,
                   f"clamd on {self.socket_path} and {self.address}", self._log_tail)
        if self.proc.poll() is not None:
            raise PeerError(f"clamd exited {self.proc.returncode}\n{self._log_tail()}")
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop clamd (thawed first if frozen); safe to call twice."""
        proc, self.proc = self.proc, None
        _running.discard(self)
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGCONT)
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)

    def freeze(self) -> None:
        """SIGSTOP: connections are still accepted by the kernel, nothing is answered."""
        assert self.proc is not None and pid_alive(self.proc.pid, self._ticks)
        os.kill(self.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT after :meth:`freeze`."""
        if self.proc is not None and pid_alive(self.proc.pid, self._ticks):
            os.kill(self.proc.pid, signal.SIGCONT)

    def __enter__(self) -> ClamdPeer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_text(self) -> str:
        """What clamd logged so far."""
        return read_log(self.log_file)

    # -- internals --------------------------------------------------------------------------------

    def _answers(self) -> bool:
        try:
            return (ask(self.socket_path, b"zPING\0", 1.0) == b"PONG"
                    and ask((self.host, self.port), b"zPING\0", 1.0) == b"PONG")
        except OSError:
            return False

    def _log_tail(self) -> str:
        out = self.workdir / "clamd.out"
        return f"clamd log tail ({self.log_file}):\n{tail(self.log_file)}\n{tail(out, 10)}"

    def _prepare(self) -> None:
        make_traversable(self.workdir)
        self.db_dir.mkdir(exist_ok=True)
        md5 = hashlib.md5(EICAR).hexdigest()  # noqa: S324 - the signature format is MD5
        (self.db_dir / "mailpipe-test.hdb").write_text(f"{md5}:{len(EICAR)}:{SIGNATURE}\n")
        lines = {
            "DatabaseDirectory": str(self.db_dir),
            "LocalSocket": self.socket_path,
            "LocalSocketMode": "666",
            "TCPSocket": str(self.port),
            "TCPAddr": self.host,
            "Foreground": "yes",
            "LogFile": str(self.log_file),
            "LogTime": "yes",
            "PidFile": str(self.workdir / "clamd.pid"),
            "TemporaryDirectory": str(self.workdir),
            "MaxThreads": "4",
            "ReadTimeout": "10",
            "CommandReadTimeout": "10",
            **self.settings,
        }
        if os.geteuid() == 0:
            lines["User"] = CLAM_USER
        self.config_file.write_text("".join(f"{k} {v}\n" for k, v in lines.items()))
        if os.geteuid() == 0:
            entry = pwd.getpwnam(CLAM_USER)
            for path in (self.workdir, self.db_dir, *self.db_dir.iterdir()):
                os.chown(path, entry.pw_uid, entry.pw_gid)


@atexit.register
def _stop_all() -> None:
    for peer in list(_running):
        with contextlib.suppress(Exception):
            peer.stop()
