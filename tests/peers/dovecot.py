"""A private Dovecot instance: POP3 server (plain+STLS and implicit TLS) and SASL service.

It runs from its own config file (``dovecot -c FILE``) with its own base_dir,
log file and passwd-file users, binds only the loopback address it is given,
and offers an auth socket that a private Postfix uses for SMTP AUTH.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from .daemon import MasterDaemon
from .net import PeerError, free_ports, make_traversable, tail, wait_until

if TYPE_CHECKING:
    from .certs import TestPKI

MAIL_USER = "nobody"
MAIL_GROUP = "nogroup"
MAIL_UID = 65534
MAIL_GID = 65534
# Dovecot makes sockets such as base_dir/anvil-auth-penalty and base_dir/login/pop3.
_MAX_BASE_DIR = 107 - 30
LOG_TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S.%f"

_LOGIN_RE = re.compile(
    r"^(?P<ts>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}) pop3-login: Info: Login: "
    r"user=<(?P<user>[^>]*)>, method=(?P<method>[^,]+), rip=(?P<rip>[^,]+), lip=(?P<lip>[^,]+)"
    r"(?P<rest>.*)$"
)


class Pop3Login(NamedTuple):
    """One successful POP3 login as Dovecot logged it."""

    timestamp: datetime
    user: str
    method: str
    rip: str
    lip: str
    tls: bool
    line: str


@dataclass(frozen=True)
class DovecotPorts:
    """The POP3 ports of one instance."""

    pop3: int
    pop3s: int


class DovecotPeer(MasterDaemon):
    """A private Dovecot on ``host`` with POP3 (STLS offered) and POP3S, plus SASL for Postfix.

    ``users`` maps usernames to cleartext passwords (stored ``{PLAIN}``, so
    CRAM-MD5 and APOP work too). Ports default to free ones chosen now.
    ``auth_failure_delay`` is Dovecot's pause before a failure reply (its
    default is 2s; 0 keeps tests fast). The per-IP auth penalty is always off.
    Use as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    kind = "Dovecot"

    def __init__(
        self,
        workdir: Path,
        pki: TestPKI,
        users: dict[str, str],
        *,
        host: str = "127.0.1.110",
        pop3_port: int = 0,
        pop3s_port: int = 0,
        name: str = "dovecot",
        auth_failure_delay: str = "0",
        start_timeout: float = 10.0,
    ) -> None:
        super().__init__(workdir, host, start_timeout)
        self.pki = pki
        self.users = dict(users)
        chosen = iter(free_ports(host, 2))
        self.pop3_port = pop3_port or next(chosen)
        self.pop3s_port = pop3s_port or next(chosen)
        self.name = name
        self.auth_failure_delay = auth_failure_delay
        self.config_file = self.workdir / "dovecot.conf"
        self.base_dir = self.workdir / "run"
        self._temp_base_dir = len(str(self.base_dir)) > _MAX_BASE_DIR
        if self._temp_base_dir:
            # Unix socket paths are limited to 107 bytes: use a short runtime dir instead.
            self.base_dir = Path(tempfile.mkdtemp(prefix="dovecot-run-", dir="/tmp"))
        self.state_dir = self.workdir / "state"
        self.mail_dir = self.workdir / "mail"
        self.passwd_file = self.workdir / "users.passwd"
        self.log_file = self.workdir / "dovecot.log"
        self.pid_file = self.base_dir / "master.pid"

    # -- public API ---------------------------------------------------------

    @property
    def ports(self) -> DovecotPorts:
        """Both POP3 ports."""
        return DovecotPorts(self.pop3_port, self.pop3s_port)

    @property
    def auth_socket(self) -> Path:
        """The unix socket (mode 0666) that Postfix's ``smtpd_sasl_path`` should name."""
        return self.base_dir / "auth-postfix"

    def listen_ports(self) -> list[int]:
        """Both POP3 ports."""
        return [self.pop3_port, self.pop3s_port]

    def stop(self) -> None:
        """Stop the master process (and so its children) if it runs; safe to call twice.

        If stopping raises, the master is still killed by pid and the temporary folder removed.
        """
        try:
            super().stop()
        finally:
            if self._temp_base_dir:
                shutil.rmtree(self.base_dir, ignore_errors=True)

    def pop3_logins(self) -> list[Pop3Login]:
        """Successful POP3 logins, oldest first, parsed from ``pop3-login: Login:`` lines."""
        logins = []
        for line in self.log_text().splitlines():
            m = _LOGIN_RE.match(line)
            if m:
                logins.append(
                    Pop3Login(
                        timestamp=datetime.strptime(m["ts"], LOG_TIMESTAMP_FORMAT),
                        user=m["user"],
                        method=m["method"],
                        rip=m["rip"],
                        lip=m["lip"],
                        tls=", TLS" in m["rest"],
                        line=line,
                    )
                )
        return logins

    def wait_for_logins(self, count: int, timeout: float = 10.0) -> list[Pop3Login]:
        """Wait (bounded) until at least ``count`` POP3 logins are logged, and return them."""
        wait_until(lambda: len(self.pop3_logins()) >= count, timeout, f"{count} POP3 logins", self._log_tail)
        return self.pop3_logins()

    def add_message(self, user: str, data: bytes) -> Path:
        """Put one message into ``user``'s maildir (``new/``) so POP3 can list and retrieve it."""
        maildir = self.mail_dir / user
        for sub in ("cur", "new", "tmp"):
            (maildir / sub).mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns()}.P{os.getpid()}.mailpipe-test"
        tmp = maildir / "tmp" / name
        tmp.write_bytes(data)
        final = maildir / "new" / name
        os.replace(tmp, final)
        for p in (maildir, *(maildir / s for s in ("cur", "new", "tmp")), final):
            os.chown(p, MAIL_UID, MAIL_GID)
        return final

    # -- internals ----------------------------------------------------------

    def _launch(self) -> None:
        # Not a pipe: the daemonised master keeps its stdout/stderr open.
        startup_out = self.workdir / "dovecot-startup.out"
        with open(startup_out, "wb") as out:
            proc = subprocess.run(
                ["dovecot", "-c", str(self.config_file)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=self.start_timeout,
                check=False,
            )
        if proc.returncode != 0:
            raise PeerError(
                f"dovecot -c {self.config_file} failed ({proc.returncode}):\n{tail(startup_out)}\n{self._log_tail()}"
            )

    def _wait_ready(self) -> None:
        wait_until(self.auth_socket.exists, self.start_timeout, f"{self.auth_socket}", self._log_tail)

    def _write_config(self) -> None:
        make_traversable(self.workdir)
        for d in (self.base_dir, self.state_dir):
            if d.exists():
                shutil.rmtree(d)
        self.state_dir.mkdir(mode=0o755)
        self.mail_dir.mkdir(exist_ok=True)
        os.chown(self.mail_dir, MAIL_UID, MAIL_GID)
        home = self.mail_dir
        self.passwd_file.write_text(
            "".join(f"{user}:{{PLAIN}}{password}:::\n" for user, password in self.users.items())
        )
        os.chmod(self.passwd_file, 0o644)
        self.config_file.write_text(
            f"""# Generated by tests/peers/dovecot.py for one test run.
instance_name = mailpipe-{self.name}
base_dir = {self.base_dir}
state_dir = {self.state_dir}
log_path = {self.log_file}
log_timestamp = "%Y-%m-%d %H:%M:%S.%{{usecs}} "
protocols = pop3
listen = {self.host}
shutdown_clients = yes

ssl = yes
ssl_cert = <{self.pki.cert_file}
ssl_key = <{self.pki.key_file}
ssl_min_protocol = TLSv1.2

disable_plaintext_auth = no
auth_mechanisms = plain login cram-md5 apop
auth_verbose = yes
auth_failure_delay = {self.auth_failure_delay}
auth_cache_size = 0

default_internal_user = dovecot
default_login_user = dovenull
mail_uid = {MAIL_USER}
mail_gid = {MAIL_GROUP}
mail_location = maildir:{home}/%u
pop3_uidl_format = %08Xu%08Xv

passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.passwd_file}
}}
userdb {{
  driver = static
  args = uid={MAIL_USER} gid={MAIL_GROUP} home={home}/%u
}}

service pop3-login {{
  inet_listener pop3 {{
    address = {self.host}
    port = {self.pop3_port}
  }}
  inet_listener pop3s {{
    address = {self.host}
    port = {self.pop3s_port}
    ssl = yes
  }}
}}

service auth {{
  unix_listener auth-postfix {{
    mode = 0666
  }}
}}

# No per-IP auth penalty: one wrong password would slow later logins from
# 127.0.0.1 by 2-15 s. Dovecot skips the penalty when this socket is absent.
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
"""
        )

