"""pytest fixtures for the real test peers (a plugin: list it in ``pytest_plugins``).

* ``pki`` (session): a trustme CA and a server certificate for the loopback
  names and addresses the peers use, in a world-readable directory.
* ``dovecot_peer``: Dovecot with POP3/POP3S and SASL; users in :data:`PEER_USERS`.
* ``postfix_isp``: a Postfix smarthost that relays only after AUTH (through
  ``dovecot_peer``) into a :class:`RecordingSink` on 127.0.0.1 (``.sink``).
* ``dnsmasq_factory``: ``make(records, servfail_domains=(), timeout_domains=())``
  starts a dnsmasq and returns the :class:`DnsmasqPeer`.
* ``small_disk``: a 3 MB tmpfs mounted for the test (a full disk on demand).
* ``mx_sinks``: ``make(*addresses)`` starts a :class:`RecordingSink` as an MX host
  on each address, all on ``mx_port``: one port free on every address of
  ``mx_addresses`` (a folder's conftest may override that fixture).

Every peer picks free ports at run time and is stopped when its test ends,
whether the test passed or not.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest

from .certs import LOOPBACK_NAMES, TestPKI, make_pki
from .dnsmasq import DnsmasqPeer
from .dovecot import DovecotPeer
from .net import free_port_on_all, make_traversable
from .postfix import PostfixPeer
from .postgres import PostgresPeer, available
from .sink import RecordingSink

POSTFIX_HOST = "127.0.1.25"
DOVECOT_HOST = "127.0.1.110"
DNSMASQ_HOST = "127.0.1.53"
SINK_HOST = "127.0.0.1"

#: Login names and passwords known to Dovecot (and so to Postfix's SMTP AUTH).
PEER_USERS: dict[str, str] = {user: f"{user}-secret" for user in ("alice", "bob", "gateway")}

#: dnsmasq records of a zone the DNS tests share: example.test with two MX hosts (mx1 on ::1 too), a null MX.
EXAMPLE_ZONE: tuple[str, ...] = (
    "local=/test/",
    "mx-host=example.test,mx1.example.test,10",
    "mx-host=example.test,mx2.example.test,20",
    "host-record=mx1.example.test,127.0.1.21,::1",
    "host-record=mx2.example.test,127.0.1.22",
    "dns-rr=nullmx.test,15,000000",
)

#: The loopback addresses MX sinks listen on unless a conftest overrides ``mx_addresses``.
MX_ADDRESSES = ("127.0.1.21", "127.0.1.22", "127.0.1.23", "::1")

#: Names in the test server certificate (certs.LOOPBACK_NAMES plus the peers' addresses).
PKI_NAMES: tuple[str, ...] = tuple(dict.fromkeys((*LOOPBACK_NAMES, POSTFIX_HOST, DOVECOT_HOST, DNSMASQ_HOST)))

#: Set to 1 where mounting a tmpfs is impossible, to skip the full-disk tests knowingly.
NO_TMPFS = "MAILPIPE_TESTS_NO_TMPFS"

DnsmasqFactory = Callable[..., DnsmasqPeer]
#: ``mx_sinks(*addresses)``: RecordingSinks on those addresses, all on ``mx_port``.
MxSinks = Callable[..., list[RecordingSink]]


def _peer_dir(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """A fresh short directory that Postfix's and Dovecot's users can traverse."""
    path = tmp_path_factory.mktemp(name)
    make_traversable(path)
    return path


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    """A CA and a server certificate/key for the loopback names, readable by every user."""
    return make_pki(_peer_dir(tmp_path_factory, "pki"), PKI_NAMES)


@pytest.fixture
def dovecot_peer(tmp_path_factory: pytest.TempPathFactory, pki: TestPKI) -> Iterator[DovecotPeer]:
    """A running Dovecot on 127.0.1.110 (POP3 with STLS, POP3S, SASL socket) with PEER_USERS."""
    peer = DovecotPeer(_peer_dir(tmp_path_factory, "dovecot"), pki, PEER_USERS, host=DOVECOT_HOST)
    with peer:
        yield peer


@pytest.fixture
def postfix_isp(
    tmp_path_factory: pytest.TempPathFactory, pki: TestPKI, dovecot_peer: DovecotPeer
) -> Iterator[PostfixPeer]:
    """A running Postfix smarthost on 127.0.1.25 relaying after AUTH into ``.sink``.

    Ports: ``.submission_port`` (STARTTLS), ``.smtps_port`` (implicit TLS),
    ``.smtp_port`` (port-25 style, STARTTLS too).
    """
    with RecordingSink(SINK_HOST) as sink:
        peer = PostfixPeer(
            _peer_dir(tmp_path_factory, "postfix"),
            pki,
            sasl_path=dovecot_peer.auth_socket,
            sink=sink,
            host=POSTFIX_HOST,
            smtp_port=0,
        )
        with peer:
            yield peer


@pytest.fixture
def dnsmasq_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DnsmasqFactory]:
    """Start dnsmasq servers on demand: ``make(records, servfail_domains=(), timeout_domains=())``.

    Extra keyword arguments go to :class:`DnsmasqPeer` (e.g. ``address=``).
    All of them are stopped when the test ends, even if stopping one of them raises.
    """
    with contextlib.ExitStack() as stack:

        def make(
            records: Iterable[str],
            servfail_domains: Iterable[str] = (),
            timeout_domains: Iterable[str] = (),
            **kwargs: object,
        ) -> DnsmasqPeer:
            kwargs.setdefault("address", DNSMASQ_HOST)
            peer = DnsmasqPeer(
                _peer_dir(tmp_path_factory, "dnsmasq"),
                records,
                servfail_domains=servfail_domains,
                timeout_domains=timeout_domains,
                **kwargs,  # type: ignore[arg-type]
            )
            stack.callback(peer.stop)  # before start: a start that fails half-way is stopped too
            return peer.start()

        yield make


@pytest.fixture
def mx_addresses() -> tuple[str, ...]:
    """Every address an MX server of a test may listen on (all on ``mx_port``); override to add some."""
    return MX_ADDRESSES


@pytest.fixture
def mx_port(mx_addresses: tuple[str, ...]) -> int:
    """A TCP port free on every address of ``mx_addresses`` right now (the gateway's ``direct.port``)."""
    return free_port_on_all(mx_addresses)


@pytest.fixture
def mx_sinks(mx_port: int, mx_addresses: tuple[str, ...]) -> Iterator[MxSinks]:
    """``make(*addresses)``: RecordingSinks on those addresses, all on ``mx_port``; stopped after the test."""
    with contextlib.ExitStack() as stack:

        def make(*addresses: str) -> list[RecordingSink]:
            assert set(addresses) <= set(mx_addresses), f"add {addresses} to mx_addresses so the port is checked"
            return [stack.enter_context(RecordingSink(a, mx_port)) for a in addresses]

        yield make


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 3 MB tmpfs to fill, mounted for this test.

    Mounting needs root (or CAP_SYS_ADMIN): without it the test fails, so a robustness claim
    never goes unchecked silently; on a machine that cannot mount at all, set
    MAILPIPE_TESTS_NO_TMPFS=1 to skip it on purpose.
    """
    mount = tmp_path / "small"
    mount.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True,
                         timeout=30, check=False)
    if res.returncode != 0:
        reason = f"cannot mount a small tmpfs here: {res.stderr.decode().strip()}"
        if os.environ.get(NO_TMPFS) == "1":
            pytest.skip(f"{reason} ({NO_TMPFS}=1)")
        pytest.fail(f"{reason}; run as root, or set {NO_TMPFS}=1 to skip the full-disk test on purpose")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False, timeout=30)


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresPeer]:
    """A private PostgreSQL 15 cluster on 127.0.0.1 and a free port, started once for the session."""
    reason = available()
    if reason:
        pytest.skip(reason)
    peer = PostgresPeer(tmp_path_factory.mktemp("postgres") / "cluster")
    with peer:
        yield peer
