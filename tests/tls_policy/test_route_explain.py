"""``pipeline route ADDRESS`` shows the transport security each MX host would get, and why (real CLI)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.peers.dnssec import SignedDns
from tests.peers.https_server import HttpsPeer
from tests.peers.mailpipe import run_pipeline

from .conftest import gateway_config
from .world import Pki


def _route(config: Path, address: str) -> dict:
    [row] = json.loads(run_pipeline(config, "route", "--json", address).stdout)
    return row


def test_route_explains_the_policy_of_each_host(signed_dns: SignedDns, https_peer: HttpsPeer, pki: Pki,
                                                mx_port: int, workdir: Path) -> None:
    """DANE with its TLSA records, DANE before MTA-STS, MTA-STS enforce with its policy, an insecure domain
    (why there is no DANE), a bogus TLSA lookup (host not tried); the dry run fetches but never caches."""
    config = workdir / "route.yaml"
    options = {"dnssec": "validating"}
    config.write_text(yaml.safe_dump(gateway_config(
        workdir, SignedDns.server(signed_dns.validating), mx_port, pki, https_peer.port, options)))
    fetched = https_peer.fetches("stsonly.secure.test")

    ok = _route(config, "bob@ok.secure.test")
    assert ok["dane"] == "opportunistic" and "DNSSEC-authenticated" in ok["dnssec"]
    [host] = ok["transport security"]
    assert host.startswith("10 a.hosts.test: dane (1 DNSSEC-authenticated TLSA record(s)")

    both = _route(config, "bob@both.secure.test")
    assert "mode enforce" in both["mta-sts"] and "mx.elsewhere.test" in both["mta-sts"]
    assert [h.split(":")[1].split("(")[0].strip() for h in both["transport security"]] == ["dane", "dane"]
    assert all("DANE takes precedence over the MTA-STS policy" in h for h in both["transport security"])

    sts = _route(config, "bob@stsonly.secure.test")
    [host] = sts["transport security"]
    assert host.startswith("10 n.hosts.test: mta-sts (MTA-STS enforce, policy id 7")
    assert "no DANE: no TLSA records at" in host and "(DNSSEC-authenticated denial)" in host

    insecure = _route(config, "bob@insecure.test")
    [host] = insecure["transport security"]
    assert "opportunistic" in host and "MX records of insecure.test are not DNSSEC-authenticated" in host

    bogus = _route(config, "bob@bogus-tlsa.secure.test")
    [host] = bogus["transport security"]
    assert "not tried" in host and "SERVFAIL" in host

    # each run fetched the MTA-STS policies it needed (no cache without a queue), sent no mail
    assert https_peer.fetches("stsonly.secure.test") == fetched + 1
