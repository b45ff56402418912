"""Small pure pieces of the direct plugin: ordering, address order, option parsing, defaults."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from pydantic import ValidationError

from mailpipe.plugins.direct import recipient_domain
from mailpipe.plugins.direct.hosts import interleave
from mailpipe.plugins.direct.mx import address_literal, order_records
from mailpipe.plugins.direct.options import DirectOptions, parse_dns_server
from tests.peers.mailpipe import run_pipeline


def test_mx_records_sorted_by_preference_and_equal_ones_shuffled() -> None:
    """MX records sort by preference; equal preferences come out in varying order."""
    records = [(20, "c"), (10, "a"), (10, "b"), (30, "d"), (10, "e")]
    seen = set()
    for seed in range(50):
        ordered = order_records(records, random.Random(seed))
        assert [p for p, _ in ordered] == [10, 10, 10, 20, 30]
        assert [n for _, n in ordered][3:] == ["c", "d"]
        seen.add(tuple(n for _, n in ordered[:3]))
    assert len(seen) > 1  # equal preferences do not always come out in the same order


def test_addresses_interleave_families_preferring_ipv6() -> None:
    """Addresses alternate between IPv6 and IPv4, starting with the preferred family."""
    addrs = ["192.0.2.1", "192.0.2.2", "2001:db8::1"]
    assert interleave(addrs) == ["2001:db8::1", "192.0.2.1", "192.0.2.2"]
    assert interleave(addrs, prefer_ipv6=False) == ["192.0.2.1", "2001:db8::1", "192.0.2.2"]


@pytest.mark.parametrize("text, expected", [
    ("192.0.2.53", ("192.0.2.53", 53)),
    ("127.0.1.53:2753", ("127.0.1.53", 2753)),
    ("::1", ("::1", 53)),
    ("[::1]:5353", ("::1", 5353)),
])
def test_dns_server_entries(text: str, expected: tuple[str, int]) -> None:
    """dns_servers entries: host, host:port, IPv6 and [IPv6]:port."""
    assert parse_dns_server(text) == expected


@pytest.mark.parametrize("bad", ["dns.example", "192.0.2.53:99999", "[::1]:x"])
def test_bad_dns_server_entries_are_refused(bad: str) -> None:
    """A name, a port out of range or a non-numeric port is refused."""
    with pytest.raises(ValidationError):
        DirectOptions(dns_servers=[bad])


def test_recipient_domains_and_literals() -> None:
    """The recipient domain is lower-cased without a trailing dot; address literals are recognised."""
    assert recipient_domain("Bob@Example.TEST.") == "example.test"
    assert recipient_domain("postmaster") == ""
    assert address_literal("[192.0.2.1]") == "192.0.2.1"
    assert address_literal("[IPv6:2001:db8::1]") == "2001:db8::1"
    assert address_literal("example.test") is None


def test_embedded_default_config_builds_direct_with_no_options(tmp_path: Path) -> None:
    """No config file: `pipeline route` shows direct delivery on port 25, opportunistic TLS, the system resolver.

    An address literal needs no DNS, so nothing leaves the machine.
    """
    res = run_pipeline(None, "route", "x@[192.0.2.1]", "--json", env={"MAILPIPE_STATE_DIR": str(tmp_path)})
    [route] = json.loads(res.stdout)
    assert (route["plugin"], route["kind"], route["destination"]) == ("direct", "direct", "[192.0.2.1]")
    assert (route["port"], route["tls"]) == (25, "opportunistic")
    assert route["dns"].startswith("system resolver")
