"""pytest fixtures for the real test peers (a plugin: list it in ``pytest_plugins``).

* ``pki`` (session): a trustme CA and a server certificate for the loopback
  names and addresses the peers use, in a world-readable directory.
* ``dovecot_peer``: Dovecot with POP3/POP3S and SASL; users in :data:`PEER_USERS`.
* ``postfix_isp``: a Postfix smarthost that relays only after AUTH (through
  ``dovecot_peer``) into a :class:`RecordingSink` on 127.0.0.1 (``.sink``).
* ``dnsmasq_factory``: ``make(records, servfail_domains=(), timeout_domains=())``
  starts a dnsmasq and returns the :class:`DnsmasqPeer`.

Every peer picks free ports at run time and is stopped when its test ends,
whether the test passed or not.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest

from .certs import LOOPBACK_NAMES, TestPKI, make_pki
from .dnsmasq import DnsmasqPeer
from .dovecot import DovecotPeer
from .net import make_traversable
from .postfix import PostfixPeer
from .sink import RecordingSink

POSTFIX_HOST = "127.0.1.25"
DOVECOT_HOST = "127.0.1.110"
DNSMASQ_HOST = "127.0.1.53"
SINK_HOST = "127.0.0.1"

#: Login names and passwords known to Dovecot (and so to Postfix's SMTP AUTH).
PEER_USERS: dict[str, str] = {
    "alice": "alice-secret",
    "bob": "bob-secret",
    "gateway": "gateway-secret",
}

#: Names in the test server certificate (certs.LOOPBACK_NAMES plus the peers' addresses).
PKI_NAMES: tuple[str, ...] = tuple(dict.fromkeys((*LOOPBACK_NAMES, POSTFIX_HOST, DOVECOT_HOST, DNSMASQ_HOST)))

DnsmasqFactory = Callable[..., DnsmasqPeer]


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
