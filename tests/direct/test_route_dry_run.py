"""``pipeline route ADDRESS``: how a recipient would leave, through the real CLI; nothing is sent."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.direct.aliases import DnsmasqFactory
from tests.peers.badserver import BadServer
from tests.peers.fixtures import EXAMPLE_ZONE
from tests.peers.mailpipe import run_pipeline
from tests.peers.net import free_port

RECORDS = list(EXAMPLE_ZONE)


def _config(workdir, dns, port):
    host, dport = dns.nameserver
    path = workdir / "route.yaml"
    path.write_text(yaml.safe_dump({
        "hostname": "gw.test",
        "state_dir": str(workdir / "state"),
        "listen": [f"127.0.0.1:{free_port()}"],
        "chain": [{"direct": {"dns_servers": [f"{host}:{dport}"], "port": port, "tls": "opportunistic"}}],
    }))
    return path


def test_route_prints_mx_hosts_in_order_with_addresses_and_sends_nothing(
        dnsmasq_factory: DnsmasqFactory, workdir: Path,
) -> None:
    """`pipeline route` lists MX hosts in preference order with their addresses; no connection is made."""
    dns = dnsmasq_factory(RECORDS)
    port = free_port("127.0.1.21")
    config = _config(workdir, dns, port)
    # A server on mx1 that would count any connection: the dry run must make none.
    with BadServer("ok", "127.0.1.21", port) as mx1:
        out = run_pipeline(config, "route", "bob@example.test").stdout
        data = run_pipeline(config, "route", "--json", "bob@example.test").stdout
    assert mx1.connections == 0
    assert "bob@example.test: direct via direct -> example.test" in out
    assert out.index("10 mx1.example.test [::1, 127.0.1.21]") < out.index("20 mx2.example.test [127.0.1.22]")
    assert f"port: {port}" in out and "tls: opportunistic" in out and "credentials: none" in out
    [route] = json.loads(data)
    assert route["mx"] == ["10 mx1.example.test [::1, 127.0.1.21]", "20 mx2.example.test [127.0.1.22]"]
    assert route["dns"] == f"{dns.address}:{dns.port}"


def test_route_shows_dns_failures_as_the_outcome(dnsmasq_factory: DnsmasqFactory, workdir: Path) -> None:
    """`pipeline route` shows null MX, NXDOMAIN and REFUSED as the outcome the delivery would have."""
    dns = dnsmasq_factory(RECORDS)
    config = _config(workdir, dns, 25)
    [null] = json.loads(run_pipeline(config, "route", "--json", "x@nullmx.test").stdout)
    assert null["error"].startswith("556 5.1.10") and null["outcome"].startswith("permanent")
    [nx] = json.loads(run_pipeline(config, "route", "--json", "x@missing.test").stdout)
    assert nx["error"].startswith("550 5.1.2")
    text = run_pipeline(config, "route", "x@elsewhere.example").stdout
    assert "451 4.4.3" in text and "temporary" in text
