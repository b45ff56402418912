"""DNSSEC-signed test zones: NSD serves them, unbound validates them (and a second unbound does not).

Zones are signed when the peer starts (``ldns-keygen`` + ``ldns-signzone`` from
``ldnsutils``, an inception a day back against clock skew). The parent zone ``test.`` is
signed and holds the delegations: a ``secure`` child is signed and has its DS in the
parent; an ``insecure`` child is unsigned and has no DS (the parent's NSEC proves it: no
AD bit, no failure); a ``bogus`` child is signed but the parent's DS matches none of its
keys (every answer fails validation: SERVFAIL). ``tamper`` changes records of a signed
zone after signing (their signatures no longer match: those names are bogus, the rest of
the zone is fine).

One NSD serves every zone (``nsd -d``, no database, no chroot). ``validating`` is an
unbound that validates with the parent's DS as its only trust anchor and reaches the
zones through one ``stub-zone`` each; ``plain`` is an unbound with validation off (only
the iterator): a resolver that passes answers on without ever setting the AD bit.
Installed by ``.ci/install-dnssec.sh``; every daemon is stopped by its own process.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .dnsmasq import dns_answers, free_dns_port
from .net import PeerError, make_traversable, tail, wait_until

PROGRAMS = ("nsd", "nsd-checkconf", "unbound", "unbound-checkconf", "ldns-keygen", "ldns-signzone")
PARENT = "test"

_running: set[_Daemon] = set()


def available() -> str | None:
    """Why these peers cannot run here (None when they can)."""
    missing = [p for p in PROGRAMS if shutil.which(p) is None]
    return f"{', '.join(missing)} not installed; run .ci/install-dnssec.sh" if missing else None


@dataclass
class Zone:
    """One child zone of ``test.``: its name, zone-file lines, how it is delegated, records to corrupt.

    ``records`` are zone-file lines (``@ MX 10 mx.other.test.``, ``mx A 127.0.1.31``);
    SOA and NS are added. ``tamper`` names ``(owner, type)`` pairs (owner absolute, no final
    dot) whose data is changed after signing.
    """

    name: str
    records: list[str]
    security: Literal["secure", "insecure", "bogus"] = "secure"
    tamper: list[tuple[str, str]] = field(default_factory=list)


class _Daemon:
    """A program in the foreground, owned by this Python process."""

    def __init__(self, name: str, argv: list[str], workdir: Path, log: Path) -> None:
        self.name, self.argv, self.workdir, self.log = name, argv, workdir, log
        self.proc: subprocess.Popen[bytes] | None = None
        self._out = None

    def start(self) -> None:
        self._out = open(self.workdir / f"{self.name}.out", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self._out,
                                     stderr=subprocess.STDOUT, cwd=self.workdir)
        _running.add(self)

    def details(self) -> str:
        return (f"{' '.join(self.argv)}\noutput:\n{tail(self.workdir / f'{self.name}.out')}\n"
                f"log:\n{tail(self.log)}")

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise PeerError(f"{self.name} exited with {self.proc.returncode}:\n{self.details()}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        _running.discard(self)
        if proc is None:
            return
        try:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
        finally:
            if self._out is not None:
                self._out.close()


def _run(argv: list[str], cwd: Path) -> str:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise PeerError(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout


class SignedDns:
    """NSD with the signed zones, a validating unbound and a non-validating unbound, all on ``address``.

    ``validating`` and ``plain`` are ``(address, port)`` of the two resolvers;
    ``authoritative`` that of NSD. ``trust_anchor`` is the parent's DS record.
    Use as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(self, workdir: Path, zones: list[Zone], *, address: str = "127.0.0.1",
                 start_timeout: float = 20.0) -> None:
        self.workdir = Path(workdir)
        self.zones = zones
        self.address = address
        self.start_timeout = start_timeout
        self.trust_anchor = ""
        self._daemons: list[_Daemon] = []
        self.nsd_port = self.validating_port = self.plain_port = 0

    @property
    def validating(self) -> tuple[str, int]:
        return (self.address, self.validating_port)

    @property
    def plain(self) -> tuple[str, int]:
        return (self.address, self.plain_port)

    @property
    def authoritative(self) -> tuple[str, int]:
        return (self.address, self.nsd_port)

    @staticmethod
    def server(endpoint: tuple[str, int]) -> str:
        """``"127.0.0.1:5353"``: an endpoint as ``direct.dns_servers`` takes it."""
        return f"{endpoint[0]}:{endpoint[1]}"

    # -- life ------------------------------------------------------------------------------------

    def start(self) -> SignedDns:
        why = available()
        if why:
            raise PeerError(why)
        make_traversable(self.workdir)
        try:
            self._sign_all()
            self.nsd_port = free_dns_port(self.address)
            self._start_nsd()
            self.validating_port = free_dns_port(self.address)
            self._start_unbound("unbound", self.validating_port, validate=True)
            self.plain_port = free_dns_port(self.address)
            self._start_unbound("unbound-plain", self.plain_port, validate=False)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        daemons, self._daemons = self._daemons, []
        with contextlib.ExitStack() as stack:
            for daemon in daemons:
                stack.callback(daemon.stop)

    def __enter__(self) -> SignedDns:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- zones -----------------------------------------------------------------------------------

    def _keygen(self, zone: str) -> str:
        base = _run(["ldns-keygen", "-r", "/dev/urandom", "-a", "ECDSAP256SHA256", "-k", zone], self.workdir)
        return base.strip()

    def _sign(self, zone: str, text: str, key: str) -> Path:
        source = self.workdir / f"{zone}.zone"
        source.write_text(text)
        signed = self.workdir / f"{zone}.zone.signed"
        today = datetime.datetime.now(datetime.UTC)
        inception = (today - datetime.timedelta(days=1)).strftime("%Y%m%d")
        expiration = (today + datetime.timedelta(days=30)).strftime("%Y%m%d")
        _run(["ldns-signzone", "-i", inception, "-e", expiration, "-o", zone, "-f", str(signed), str(source), key],
             self.workdir)
        return signed

    @staticmethod
    def _head(zone: str) -> str:
        return (f"$ORIGIN {zone}.\n$TTL 300\n"
                f"@ IN SOA ns.{PARENT}. hostmaster.{zone}. 1 3600 600 86400 300\n"
                f"@ IN NS ns.{PARENT}.\n")

    def _sign_all(self) -> None:
        parent_lines = [self._head(PARENT), f"ns A {self.address}\n"]
        for zone in self.zones:
            name = zone.name.rstrip(".")
            if not name.endswith(f".{PARENT}") or name.count(".") != 1:
                raise PeerError(f"zone {name!r}: only children of {PARENT}. (NAME.{PARENT}) are served")
            text = self._head(name) + "".join(f"{line}\n" for line in zone.records)
            parent_lines.append(f"{name}. NS ns.{PARENT}.\n")
            if zone.security == "insecure":
                (self.workdir / f"{name}.zone.signed").write_text(text)
                continue
            key = self._keygen(name)
            signed = self._sign(name, text, key)
            if zone.tamper:
                _tamper(signed, zone.tamper)
            ds = (self.workdir / f"{key}.ds").read_text().split(";")[0].strip()
            if zone.security == "bogus":  # a DS that matches none of the child's keys
                head, digest = ds.rsplit(None, 1)
                ds = f"{head} {_flip(digest)}"
            parent_lines.append(ds + "\n")
        key = self._keygen(PARENT)
        self._sign(PARENT, "".join(parent_lines), key)
        self.trust_anchor = (self.workdir / f"{key}.ds").read_text().split(";")[0].strip()

    # -- daemons ---------------------------------------------------------------------------------

    def _start_nsd(self) -> None:
        conf = self.workdir / "nsd.conf"
        zones = [PARENT] + [z.name.rstrip(".") for z in self.zones]
        conf.write_text(
            "server:\n"
            f"  ip-address: {self.address}@{self.nsd_port}\n"
            f"  port: {self.nsd_port}\n"
            '  database: ""\n  username: ""\n  chroot: ""\n'
            f"  zonesdir: {self.workdir}\n"
            f"  pidfile: {self.workdir}/nsd.pid\n"
            f"  logfile: {self.workdir}/nsd.log\n"
            f"  xfrdfile: {self.workdir}/xfrd.state\n"
            f"  zonelistfile: {self.workdir}/zone.list\n"
            "  server-count: 1\n  verbosity: 1\n  do-ip6: no\n"
            "remote-control:\n  control-enable: no\n"
            + "".join(f"zone:\n  name: {z}.\n  zonefile: {z}.zone.signed\n" for z in zones)
        )
        _run(["nsd-checkconf", str(conf)], self.workdir)
        self._daemon("nsd", ["nsd", "-d", "-c", str(conf)], self.workdir / "nsd.log", self.nsd_port)

    def _start_unbound(self, name: str, port: int, *, validate: bool) -> None:
        conf = self.workdir / f"{name}.conf"
        zones = [PARENT] + [z.name.rstrip(".") for z in self.zones]
        lines = [
            "server:",
            f"  interface: {self.address}",
            f"  port: {port}",
            "  do-ip6: no",
            "  do-not-query-localhost: no",
            "  access-control: 127.0.0.0/8 allow",
            '  username: ""',
            '  chroot: ""',
            f"  directory: {self.workdir}",
            '  pidfile: ""',
            "  use-syslog: no",
            f"  logfile: {self.workdir}/{name}.log",
            "  verbosity: 1",
            "  val-log-level: 2",
            "  num-threads: 1",
            "  qname-minimisation: no",
            "  aggressive-nsec: no",
            f'  local-zone: "{PARENT}." nodefault',
        ]
        if validate:
            lines += ['  module-config: "validator iterator"', f'  trust-anchor: "{self.trust_anchor}"']
        else:
            lines += ['  module-config: "iterator"']
        lines += ["remote-control:", "  control-enable: no"]
        for z in zones:
            lines += ["stub-zone:", f'  name: "{z}."', f"  stub-addr: {self.address}@{self.nsd_port}"]
        conf.write_text("\n".join(lines) + "\n")
        _run(["unbound-checkconf", str(conf)], self.workdir)
        self._daemon(name, ["unbound", "-d", "-p", "-c", str(conf)], self.workdir / f"{name}.log", port)

    def _daemon(self, name: str, argv: list[str], log: Path, port: int) -> None:
        daemon = _Daemon(name, argv, self.workdir, log)
        self._daemons.append(daemon)
        daemon.start()

        def ready() -> bool:
            daemon.check_alive()
            return dns_answers(self.address, port)

        wait_until(ready, self.start_timeout, f"{name} on {self.address}:{port}", daemon.details)


def _flip(hexdigits: str) -> str:
    """The same hex string with its last digit changed."""
    last = hexdigits[-1].lower()
    return hexdigits[:-1] + ("0" if last != "0" else "1")


def _tamper(signed: Path, targets: list[tuple[str, str]]) -> None:
    """Change the data of the ``(owner, type)`` records in a signed zone file (their RRSIGs stay)."""
    wanted = {(o.rstrip(".").lower() + ".", t.upper()) for o, t in targets}
    out, changed = [], set()
    for line in signed.read_text().splitlines():
        fields = line.split()
        if len(fields) >= 5 and (fields[0].lower(), fields[3].upper()) in wanted:
            key = (fields[0].lower(), fields[3].upper())
            if line.endswith('"'):
                line = line[:-1] + 'x"'
            else:
                line = line[:-1] + ("2" if line[-1] != "2" else "3")
            changed.add(key)
        out.append(line)
    if changed != wanted:
        raise PeerError(f"records to tamper with not found in {signed}: {sorted(wanted - changed)}")
    signed.write_text("\n".join(out) + "\n")


@atexit.register
def _stop_all() -> None:
    with contextlib.ExitStack() as stack:
        for daemon in list(_running):
            stack.callback(daemon.stop)
