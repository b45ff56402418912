"""A private Postfix instance acting as an ISP smarthost that relays only after SMTP AUTH.

It has its own config, queue and data directories under a work dir, logs to a
file there, never touches /etc/postfix or port 25, authenticates through a
Dovecot auth socket, and relays everything it accepts to one SMTP server (a
:class:`~tests.peers.sink.RecordingSink`) on a loopback port.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from .certs import TestPKI
from .net import (
    PeerError,
    free_ports,
    kill_leftover,
    make_traversable,
    pid_alive,
    port_accepts,
    process_start_ticks,
    read_pid_file,
    tail,
    terminate_group,
    wait_until,
)

if TYPE_CHECKING:
    from .sink import RecordingSink

_SASL_RE = re.compile(
    r"^(?P<ts>\S+ +\S+ +\S+) \S+ (?P<service>[^\[:]+)\[\d+\]: (?P<queue_id>[0-9A-Za-z]+): "
    r"client=(?P<client>[^,]+), sasl_method=(?P<method>[^,]+), sasl_username=(?P<user>\S+)"
)

_running: set[PostfixPeer] = set()


class SaslLogin(NamedTuple):
    """One message accepted after SMTP AUTH, as Postfix logged it."""

    queue_id: str
    method: str
    username: str
    client: str
    service: str
    line: str


class PostfixPeer:
    """A private Postfix smarthost on ``host``: submission (STARTTLS) and SMTPS ports, optional port-25 style.

    * ``relay_port``: port on 127.0.0.1 where all relayed mail goes (no TLS);
      or ``sink``: a :class:`RecordingSink` on 127.0.0.1 (kept as ``.sink``).
    * ``sasl_path``: a Dovecot auth socket (:attr:`DovecotPeer.auth_socket`);
      without it no AUTH is offered, so nothing can relay.
    * ``submission_port``/``smtps_port``: 0 picks a free port; ``smtp_port``:
      0 picks one, ``None`` (default) means no plain listener. The plain
      listener offers STARTTLS and AUTH (after TLS) just like submission.
    * ``extra_main``: more main.cf settings (override the defaults).

    Use as a context manager, or call :meth:`start` and :meth:`stop`; a
    restart keeps the queue (and appends to the log).
    """

    def __init__(
        self,
        workdir: Path,
        pki: TestPKI,
        *,
        sasl_path: Path | None,
        relay_port: int | None = None,
        sink: RecordingSink | None = None,
        host: str = "127.0.1.25",
        submission_port: int = 0,
        smtps_port: int = 0,
        smtp_port: int | None = None,
        name: str = "isp",
        myhostname: str = "smarthost.isp.test",
        extra_main: dict[str, str] | None = None,
        start_timeout: float = 10.0,
    ) -> None:
        self.workdir = Path(workdir)
        self.pki = pki
        if relay_port is None:
            if sink is None:
                raise ValueError("PostfixPeer needs relay_port or sink")
            relay_port = sink.port
        self.sink = sink
        self.relay_port = relay_port
        self.sasl_path = Path(sasl_path) if sasl_path is not None else None
        self.host = host
        chosen = iter(free_ports(host, 3))
        self.submission_port = submission_port or next(chosen)
        self.smtps_port = smtps_port or next(chosen)
        self.smtp_port = None if smtp_port is None else (smtp_port or next(chosen))
        self.name = name
        self.myhostname = myhostname
        self.extra_main = dict(extra_main or {})
        self.start_timeout = start_timeout
        self.config_dir = self.workdir / "etc"
        self.queue_dir = self.workdir / "spool"
        self.data_dir = self.workdir / "data"
        self.log_file = self.workdir / "maillog"
        self.syslog_name = f"postfix-{name}"
        self.startup_seconds: float | None = None
        self._pid: int | None = None
        self._pid_ticks: int | None = None

    # -- public API ---------------------------------------------------------

    @property
    def ports(self) -> list[int]:
        """Every port this instance listens on."""
        return [p for p in (self.submission_port, self.smtps_port, self.smtp_port) if p is not None]

    def start(self) -> PostfixPeer:
        """Write the configuration, check it, start Postfix and wait until every listener accepts."""
        if self._pid is not None:
            raise PeerError(f"{type(self).__name__} in {self.workdir} is already running")
        began = time.monotonic()
        self._write_config()
        self._check_config()
        proc = self._postfix("start")
        if proc.returncode != 0:
            raise PeerError(f"postfix -c {self.config_dir} start failed:\n{proc.stdout}\n{self._log_tail()}")
        pid_file = self.queue_dir / "pid" / "master.pid"
        try:
            self._pid = read_pid_file(pid_file, self.start_timeout, self._log_tail)
            self._pid_ticks = process_start_ticks(self._pid)
            _running.add(self)
            for port in self.ports:
                wait_until(
                    lambda port=port: port_accepts(self.host, port),
                    self.start_timeout,
                    f"Postfix smtpd on {self.host}:{port}",
                    self._log_tail,
                )
        except BaseException:
            if self._pid is None:  # started, but the pid was not seen in time: still stop it
                with contextlib.suppress(PeerError):
                    self._pid = read_pid_file(pid_file, 1.0)
                    self._pid_ticks = process_start_ticks(self._pid)
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def stop(self) -> None:
        """Stop the master (which stops its children); safe to call twice.

        If stopping raises, the master (and its group) is still killed by pid.
        """
        pid, self._pid = self._pid, None
        _running.discard(self)
        if pid is not None and pid_alive(pid, self._pid_ticks):
            try:
                terminate_group(pid, start_ticks=self._pid_ticks)
            finally:
                kill_leftover(pid, self._pid_ticks)
            # The master signals its children; wait until none still holds a listener.
            wait_until(
                lambda: not any(port_accepts(self.host, p) for p in self.ports),
                10,
                f"Postfix listeners on {self.host} {self.ports} to close",
            )

    def __enter__(self) -> PostfixPeer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def flush(self) -> None:
        """Ask Postfix to retry all deferred mail now (``postqueue -c DIR -f``)."""
        proc = subprocess.run(
            ["postqueue", "-c", str(self.config_dir), "-f"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if proc.returncode != 0:
            raise PeerError(f"postqueue -f failed: {proc.stdout}{proc.stderr}")

    def queue(self) -> str:
        """The queue listing (``postqueue -p``) for diagnostics."""
        proc = subprocess.run(
            ["postqueue", "-c", str(self.config_dir), "-p"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        return proc.stdout + proc.stderr

    def log_text(self) -> str:
        """Everything this instance has logged so far."""
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def sasl_logins(self) -> list[SaslLogin]:
        """Messages accepted after AUTH, oldest first, from ``sasl_method=... sasl_username=...`` lines."""
        logins = []
        for line in self.log_text().splitlines():
            m = _SASL_RE.match(line)
            if m:
                logins.append(
                    SaslLogin(
                        queue_id=m["queue_id"],
                        method=m["method"],
                        username=m["user"],
                        client=m["client"],
                        service=m["service"],
                        line=line,
                    )
                )
        return logins

    def wait_for_log(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        """Wait (bounded) until a log line matches the regex ``pattern``; return the match."""
        rx = re.compile(pattern, re.MULTILINE)
        found: list[re.Match[str]] = []

        def seen() -> bool:
            m = rx.search(self.log_text())
            if m:
                found.append(m)
            return m is not None

        wait_until(seen, timeout, f"Postfix log line matching {pattern!r}", self._log_tail)
        return found[0]

    # -- internals ----------------------------------------------------------

    def _log_tail(self) -> str:
        return f"Postfix log tail ({self.log_file}):\n{tail(self.log_file)}"

    def _postfix(self, *args: str) -> subprocess.CompletedProcess[str]:
        # Postfix prints configuration errors only to a terminal: run it under script(1).
        cmd = shlex.join(["postfix", "-c", str(self.config_dir), *args])
        return subprocess.run(
            ["script", "-qefc", cmd, "/dev/null"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=self.start_timeout + 20,
            check=False,
        )

    def _check_config(self) -> None:
        proc = self._postfix("check")
        problems = [ln for ln in proc.stdout.splitlines() if "fatal" in ln or "error" in ln]
        if proc.returncode != 0 or problems:
            raise PeerError(
                f"postfix -c {self.config_dir} check failed ({proc.returncode}):\n{proc.stdout}\n{self._log_tail()}"
            )

    def _main_cf(self) -> dict[str, str]:
        main = {
            "compatibility_level": "3.6",
            "config_directory": str(self.config_dir),
            "queue_directory": str(self.queue_dir),
            "data_directory": str(self.data_dir),
            "syslog_name": self.syslog_name,
            "maillog_file": str(self.log_file),
            "maillog_file_prefixes": str(self.workdir),
            "myhostname": self.myhostname,
            "mydomain": "isp.test",
            "myorigin": "$myhostname",
            "inet_interfaces": "loopback-only",
            "inet_protocols": "ipv4",
            "mydestination": "",
            "relay_domains": "",
            "local_recipient_maps": "",
            "alias_maps": "",
            "alias_database": "",
            "local_transport": "error:5.1.1 no local delivery on this test smarthost",
            # Only AUTH gives relay: loopback is not a trusted network here.
            "mynetworks": "",
            "smtpd_relay_restrictions": "permit_sasl_authenticated, reject",
            "smtpd_recipient_restrictions": "",
            "smtpd_peername_lookup": "no",
            "smtpd_banner": "$myhostname ESMTP test smarthost",
            "biff": "no",
            "smtputf8_enable": "yes",
            # TLS for clients.
            "smtpd_tls_cert_file": str(self.pki.cert_file),
            "smtpd_tls_key_file": str(self.pki.key_file),
            "smtpd_tls_security_level": "may",
            "smtpd_tls_auth_only": "yes",
            "smtpd_tls_loglevel": "1",
            "smtpd_tls_received_header": "yes",
            # AUTH through Dovecot.
            "smtpd_sasl_auth_enable": "yes" if self.sasl_path else "no",
            "smtpd_sasl_type": "dovecot",
            "smtpd_sasl_path": str(self.sasl_path or ""),
            "smtpd_sasl_authenticated_header": "yes",
            "smtpd_sasl_security_options": "noanonymous",
            "smtpd_sasl_tls_security_options": "noanonymous",
            "broken_sasl_auth_clients": "no",
            # Relay everything to the recording sink, fast, without DNS.
            "relayhost": f"[127.0.0.1]:{self.relay_port}",
            "smtp_tls_security_level": "none",
            "smtp_dns_support_level": "disabled",
            "smtp_host_lookup": "native",
            "smtp_connect_timeout": "5s",
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "2s",
            "maximal_queue_lifetime": "1h",
            "bounce_queue_lifetime": "1h",
            "delay_warning_time": "0",
            "in_flow_delay": "0",
            "smtpd_error_sleep_time": "0",
            "smtpd_soft_error_limit": "100",
            "smtpd_hard_error_limit": "200",
            "message_size_limit": "52428800",
        }
        main.update(self.extra_main)
        return main

    def _master_cf(self) -> str:
        def listener(port: int, service: str, options: list[str]) -> str:
            opts = "".join(f"\n  -o {o}" for o in [f"syslog_name={self.syslog_name}/{service}", *options])
            return f"{self.host}:{port} inet n - n - - smtpd{opts}\n"

        lines = [
            "# Generated by tests/peers/postfix.py. No chroot anywhere.\n",
            listener(self.submission_port, "submission", []),
            listener(
                self.smtps_port,
                "smtps",
                ["smtpd_tls_wrappermode=yes", "smtpd_tls_security_level=encrypt"],
            ),
        ]
        if self.smtp_port is not None:
            lines.append(listener(self.smtp_port, "smtp", []))
        lines.append(
            """pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""
        )
        return "".join(lines)

    def _write_config(self) -> None:
        make_traversable(self.workdir)
        # The configuration is written afresh; queue and data directories are
        # kept, so a stop()/start() keeps mail that Postfix had queued.
        if self.config_dir.exists():
            shutil.rmtree(self.config_dir)
        for d in (self.config_dir, self.queue_dir, self.data_dir):
            d.mkdir(mode=0o755, exist_ok=True)
        shutil.chown(self.data_dir, "postfix", "postfix")
        main = "".join(f"{k} = {v}\n" for k, v in self._main_cf().items())
        (self.config_dir / "main.cf").write_text("# Generated by tests/peers/postfix.py.\n" + main)
        (self.config_dir / "master.cf").write_text(self._master_cf())
        # Postfix's load_file() dozes in 300 ms steps until a table file is
        # at least a couple of seconds old (it guards against readers racing
        # a writer). Backdate what we wrote so startup takes no 2 s pause.
        past = time.time() - 60
        for f in self.config_dir.iterdir():
            os.utime(f, (past, past))


@atexit.register
def _stop_all() -> None:
    with contextlib.ExitStack() as stack:
        for peer in list(_running):
            stack.callback(peer.stop)
