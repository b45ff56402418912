"""Fixtures of the transport-security tests (DANE, MTA-STS, TLS reports); the world is in ``world.py``.

Module-scoped: the MX port, the certificates, the policy server and the signed DNS (NSD +
a validating and a non-validating unbound, zones signed at start). Per test: the MX
servers a test names (``mx_servers("a", "b")``, each a RecordingSink presenting its
certificate; ``"s"`` is the STARTTLS-stripping relay in front of a real server) and
gateways (``gateway(dns_server, **direct_options)``, a SyncHarness on a manual clock whose
chain is only ``direct``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mailpipe.core.queue import Attempt
from tests.peers import dnssec
from tests.peers.dnssec import SignedDns
from tests.peers.harness import SyncHarness
from tests.peers.https_server import Document, HttpsPeer, policy_text
from tests.peers.net import free_port, free_port_on_all, make_traversable
from tests.peers.sink import RecordingSink
from tests.peers.stripper import StartTlsStripper

from .world import HOSTS, HTTPS_ADDRESS, MX_ADDRESSES, RELAYED, Pki, server_certs, zones

GATEWAY = "gw.test"
START = 1_800_000_000.0  # 2027-01-15 08:00 UTC
SENDER = "alice@origin.test"

#: Names in secure.test with an MTA-STS policy on the policy server (TXT id, policy).
SECURE_STS = {
    # DANE and MTA-STS both: the policy does not list host a, DANE (matching) takes precedence
    "both.secure.test": ("1", policy_text("enforce", ["mx.elsewhere.test"])),
    # MTA-STS only (host n has no TLSA): enforced with the test CA
    "stsonly.secure.test": ("7", policy_text("enforce", ["*.hosts.test"])),
}
#: ``_smtp._tls`` rua of names in secure.test (set per module from HTTPS_PORT at run time).
REPORTS_TO = "mailto:tlsrpt@reports.secure.test"

MxServers = Callable[..., dict[str, RecordingSink]]
Gateway = Callable[..., SyncHarness]


@pytest.fixture(scope="module")
def mx_port() -> int:
    """The port every MX server of the module listens on (the gateway's ``direct.port``)."""
    return free_port_on_all(MX_ADDRESSES)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("tlspki"))


@pytest.fixture(scope="module")
def https_peer(pki: Pki) -> Iterator[HttpsPeer]:
    """The policy server on 127.0.1.50 (every mta-sts.DOMAIN resolves there), on a free port."""
    from .world import STS_DOMAINS

    cert = pki.https_cert(STS_DOMAINS)
    with HttpsPeer(HTTPS_ADDRESS, str(cert.chain_file), str(cert.key_file), port=free_port(HTTPS_ADDRESS)) as peer:
        for domain, (_, text) in SECURE_STS.items():
            peer.policy(domain, text)
        peer.documents[("mta-sts.both.secure.test", "POST /tlsrpt")] = Document(b"", status=201)
        yield peer


@pytest.fixture(scope="module")
def signed_dns(tmp_path_factory: pytest.TempPathFactory, pki: Pki, mx_port: int,
               https_peer: HttpsPeer) -> Iterator[SignedDns]:
    """NSD with the signed zones of world.py, a validating unbound (``.validating``) and a plain one (``.plain``)."""
    why = dnssec.available()
    if why:
        pytest.fail(why)
    workdir = tmp_path_factory.mktemp("dnssec")
    make_traversable(workdir)
    rua = {"both": f"{REPORTS_TO},https://mta-sts.both.secure.test:{https_peer.port}/tlsrpt",
           "stsonly": REPORTS_TO}
    sts = {name.removesuffix(".secure.test"): ident for name, (ident, _) in SECURE_STS.items()}
    with SignedDns(workdir, zones(pki, mx_port, sts_domains=sts, rua=rua)) as dns:
        yield dns


@pytest.fixture
def mx_servers(pki: Pki, mx_port: int) -> Iterator[MxServers]:
    """``mx_servers("a", "s", ...)``: the MX servers of those hosts (world.py), host -> its RecordingSink."""
    certs = server_certs(pki)
    with contextlib.ExitStack() as stack:
        def make(*hosts: str) -> dict[str, RecordingSink]:
            out = {}
            for h in hosts:
                if h == "s":  # the attacker: a relay that strips STARTTLS, then the real server
                    sink = stack.enter_context(RecordingSink(RELAYED, mx_port, tls_context=certs[h].context()))
                    stack.enter_context(StartTlsStripper(HOSTS[h], mx_port, (RELAYED, mx_port)))
                else:
                    sink = stack.enter_context(RecordingSink(HOSTS[h], mx_port, tls_context=certs[h].context()))
                out[h] = sink
            return out

        yield make


def gateway_config(workdir: Path, dns_server: str, mx_port: int, pki: Pki, https_port: int,
                   options: dict[str, Any], before: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A whole config: chain ``direct`` (after ``before``), to ``mx_port``, resolving through ``dns_server``."""
    direct = {"port": mx_port, "dns_servers": [dns_server], "ca_file": str(pki.ca_file),
              "mta_sts_port": https_port, "timeout": "5s", **options}
    return {
        "hostname": GATEWAY,
        "state_dir": str(workdir / "state"),
        "listen": [f"127.0.0.1:{free_port()}"],
        "delivery": {"timeout": "5s"},
        "chain": [*(before or []), {"direct": direct}],
    }


@pytest.fixture
def gateway(workdir: Path, mx_port: int, pki: Pki, https_peer: HttpsPeer) -> Iterator[Gateway]:
    """``gateway(dns_server, name="gw", **direct_options)`` -> an opened SyncHarness; closed at the end.

    The same ``name`` twice gives a gateway on the same state folder (a restart); ``before``
    are chain entries before ``direct`` (e.g. metrics).
    """
    with contextlib.ExitStack() as stack:
        def make(dns_server: str, *, name: str = "gw", start: float = START,
                 before: list[dict[str, Any]] | None = None, **options: Any) -> SyncHarness:
            config = gateway_config(workdir / name, dns_server, mx_port, pki, https_peer.port, options, before)
            h = SyncHarness(workdir / name, config, start=start)
            stack.callback(lambda: h.loop.is_closed() or h.close())
            return h

        yield make


def deliver_each(gw: SyncHarness, expected: dict[str, str]) -> dict[str, Attempt]:
    """One message to each recipient of ``expected`` (recipient -> the state it must end in), one delivery run.

    Fails, showing the attempts, when a recipient ends in another state; recipient -> its last attempt.
    """
    mids = {rcpt: gw.submit(SENDER, [rcpt]) for rcpt in expected}
    gw.deliver()
    for rcpt, mid in mids.items():
        assert gw.states(mid) == {rcpt: expected[rcpt]}, gw.last_attempts(mid)
    return {rcpt: gw.last_attempts(mid)[rcpt] for rcpt, mid in mids.items()}


def deliver_one(gw: SyncHarness, rcpt: str, state: str) -> Attempt:
    """One message to ``rcpt``, one delivery run; it must end in ``state``: its last attempt."""
    return deliver_each(gw, {rcpt: state})[rcpt]
