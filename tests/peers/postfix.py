"""Private Postfix instances: the relay both the tests and the bench start, and the tests' ISP smarthost.

:class:`PostfixInstance` is the Debian package run from its own config, queue
and data directories under a work dir, chroot off, logging to a file there
(Postfix has no syslog here), its listeners bound explicitly in master.cf,
relaying everything to one ``relayhost`` on 127.0.0.1. It never touches
/etc/postfix or port 25. Only what such a relay needs is set in main.cf;
subclasses add theirs (:meth:`PostfixInstance.main_cf`) and say where it listens
(:meth:`PostfixInstance.listeners`).

:class:`PostfixPeer` is the tests' ISP smarthost: it relays only after SMTP AUTH,
authenticates through a Dovecot auth socket and relays to a
:class:`~tests.peers.sink.RecordingSink`. The bench's relay is
``bench.postfix_relay.PostfixRelay``.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from .daemon import MasterDaemon
from .net import PeerError, free_ports, make_traversable

if TYPE_CHECKING:  # trustme is a test dependency; the bench imports this module without it
    from .certs import TestPKI
    from .sink import RecordingSink

#: master.cf's services other than the smtpd listeners: Debian's defaults, without chroot.
MASTER_SERVICES = """\
pickup    unix  n       -       n       60      1       pickup
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

_SASL_RE = re.compile(
    r"^(?P<ts>\S+ +\S+ +\S+) \S+ (?P<service>[^\[:]+)\[\d+\]: (?P<queue_id>[0-9A-Za-z]+): "
    r"client=(?P<client>[^,]+), sasl_method=(?P<method>[^,]+), sasl_username=(?P<user>\S+)"
)


class SaslLogin(NamedTuple):
    """One message accepted after SMTP AUTH, as Postfix logged it."""

    queue_id: str
    method: str
    username: str
    client: str
    service: str
    line: str


class PostfixInstance(MasterDaemon):
    """``postfix -c WORKDIR/etc start``: a private Postfix on ``host`` relaying to ``[127.0.0.1]:relay_port``.

    Use as a context manager, or call :meth:`start` and :meth:`stop`; a restart
    keeps the queue (and appends to the log).
    """

    kind = "Postfix"

    def __init__(
        self,
        workdir: Path,
        *,
        relay_port: int,
        host: str,
        name: str,
        myhostname: str,
        generated_by: str = "tests/peers/postfix.py",
        start_timeout: float = 10.0,
    ) -> None:
        super().__init__(workdir, host, start_timeout)
        self.relay_port = relay_port
        self.name = name
        self.myhostname = myhostname
        self.generated_by = generated_by
        self.config_dir = self.workdir / "etc"
        self.queue_dir = self.workdir / "spool"
        self.data_dir = self.workdir / "data"
        self.log_file = self.workdir / "maillog"
        self.pid_file = self.queue_dir / "pid" / "master.pid"
        self.syslog_name = f"postfix-{name}"

    # -- what subclasses say --------------------------------------------------

    def listeners(self) -> list[str]:
        """The smtpd lines of master.cf (``HOST:PORT inet n - n - - smtpd`` and their ``-o`` options)."""
        raise NotImplementedError

    def main_cf(self) -> dict[str, str]:
        """main.cf: what every private relay needs; subclasses extend it (and may override any of it)."""
        return {
            "compatibility_level": "3.6",
            "config_directory": str(self.config_dir),
            "queue_directory": str(self.queue_dir),
            "data_directory": str(self.data_dir),
            "syslog_name": self.syslog_name,
            "maillog_file": str(self.log_file),
            "maillog_file_prefixes": str(self.workdir),
            "myhostname": self.myhostname,
            "mydomain": self.myhostname.split(".", 1)[-1],
            "myorigin": "$myhostname",
            "inet_interfaces": "loopback-only",
            "inet_protocols": "ipv4",
            "mydestination": "",
            "relay_domains": "",
            "local_recipient_maps": "",
            "alias_maps": "",
            "alias_database": "",
            "local_transport": "error:5.1.1 no local delivery on this relay",
            "smtpd_peername_lookup": "no",
            "relayhost": f"[127.0.0.1]:{self.relay_port}",
            "smtp_tls_security_level": "none",
            "biff": "no",
        }

    # -- public API -----------------------------------------------------------

    def master_cf(self) -> str:
        """The whole master.cf: :meth:`listeners`, then the other services, no chroot anywhere."""
        return "".join([f"# Generated by {self.generated_by}. No chroot anywhere.\n", *self.listeners(),
                        MASTER_SERVICES])

    def flush(self) -> None:
        """Ask Postfix to retry all deferred mail now (``postqueue -c DIR -f``)."""
        proc = self._postqueue("-f")
        if proc.returncode != 0:
            raise PeerError(f"postqueue -f failed: {proc.stdout}{proc.stderr}")

    def queue(self) -> str:
        """The queue listing (``postqueue -p``) for diagnostics."""
        proc = self._postqueue("-p")
        return proc.stdout + proc.stderr

    # -- internals ------------------------------------------------------------

    def _postqueue(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["postqueue", "-c", str(self.config_dir), *args], capture_output=True, text=True,
                              timeout=30, check=False)

    def _postfix(self, *args: str) -> subprocess.CompletedProcess[str]:
        # Postfix prints configuration errors only to a terminal: run it under script(1).
        cmd = shlex.join(["postfix", "-c", str(self.config_dir), *args])
        return subprocess.run(["script", "-qefc", cmd, "/dev/null"], stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=self.start_timeout + 20, check=False)

    def _launch(self) -> None:
        proc = self._postfix("check")
        problems = [ln for ln in proc.stdout.splitlines() if "fatal" in ln or "error" in ln]
        if proc.returncode != 0 or problems:
            raise PeerError(
                f"postfix -c {self.config_dir} check failed ({proc.returncode}):\n{proc.stdout}\n{self._log_tail()}"
            )
        proc = self._postfix("start")
        if proc.returncode != 0:
            raise PeerError(f"postfix -c {self.config_dir} start failed:\n{proc.stdout}\n{self._log_tail()}")

    def _write_config(self) -> None:
        make_traversable(self.workdir)
        # The configuration is written afresh; queue and data directories are
        # kept, so a stop()/start() keeps mail that Postfix had queued.
        if self.config_dir.exists():
            shutil.rmtree(self.config_dir)
        for d in (self.config_dir, self.queue_dir, self.data_dir):
            d.mkdir(mode=0o755, exist_ok=True)
        shutil.chown(self.data_dir, "postfix", "postfix")
        main = "".join(f"{k} = {v}\n" for k, v in self.main_cf().items())
        (self.config_dir / "main.cf").write_text(f"# Generated by {self.generated_by}.\n{main}")
        (self.config_dir / "master.cf").write_text(self.master_cf())
        # Postfix's load_file() dozes in 300 ms steps until a table file is
        # at least a couple of seconds old (it guards against readers racing
        # a writer). Backdate what we wrote so startup takes no 2 s pause.
        past = time.time() - 60
        for f in self.config_dir.iterdir():
            os.utime(f, (past, past))


class PostfixPeer(PostfixInstance):
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
        if relay_port is None:
            if sink is None:
                raise ValueError("PostfixPeer needs relay_port or sink")
            relay_port = sink.port
        super().__init__(workdir, relay_port=relay_port, host=host, name=name, myhostname=myhostname,
                         start_timeout=start_timeout)
        self.pki = pki
        self.sink = sink
        self.sasl_path = Path(sasl_path) if sasl_path is not None else None
        chosen = iter(free_ports(host, 3))
        self.submission_port = submission_port or next(chosen)
        self.smtps_port = smtps_port or next(chosen)
        self.smtp_port = None if smtp_port is None else (smtp_port or next(chosen))
        self.extra_main = dict(extra_main or {})

    @property
    def ports(self) -> list[int]:
        """Every port this instance listens on."""
        return [p for p in (self.submission_port, self.smtps_port, self.smtp_port) if p is not None]

    def listen_ports(self) -> list[int]:
        """Every port this instance listens on (:attr:`ports`)."""
        return self.ports

    def sasl_logins(self) -> list[SaslLogin]:
        """Messages accepted after AUTH, oldest first, from ``sasl_method=... sasl_username=...`` lines."""
        return [
            SaslLogin(queue_id=m["queue_id"], method=m["method"], username=m["user"], client=m["client"],
                      service=m["service"], line=line)
            for line in self.log_text().splitlines()
            if (m := _SASL_RE.match(line))
        ]

    def listeners(self) -> list[str]:
        """Submission, SMTPS (implicit TLS) and, when asked for, a port-25 style listener."""

        def listener(port: int, service: str, options: list[str]) -> str:
            opts = "".join(f"\n  -o {o}" for o in [f"syslog_name={self.syslog_name}/{service}", *options])
            return f"{self.host}:{port} inet n - n - - smtpd{opts}\n"

        lines = [
            listener(self.submission_port, "submission", []),
            listener(self.smtps_port, "smtps", ["smtpd_tls_wrappermode=yes", "smtpd_tls_security_level=encrypt"]),
        ]
        if self.smtp_port is not None:
            lines.append(listener(self.smtp_port, "smtp", []))
        return lines

    def main_cf(self) -> dict[str, str]:
        """A relay that takes mail only after AUTH (through Dovecot) over TLS, and retries fast."""
        return {
            **super().main_cf(),
            "local_transport": "error:5.1.1 no local delivery on this test smarthost",
            # Only AUTH gives relay: loopback is not a trusted network here.
            "mynetworks": "",
            "smtpd_relay_restrictions": "permit_sasl_authenticated, reject",
            "smtpd_recipient_restrictions": "",
            "smtpd_banner": "$myhostname ESMTP test smarthost",
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
            **self.extra_main,
        }
