"""Small pure pieces of the direct plugin: ordering, address order, option parsing, defaults."""

from __future__ import annotations

import random

import pytest
from pydantic import ValidationError

from mailpipe.core.config import load_config
from mailpipe.core.gateway import Gateway
from mailpipe.plugins.direct import recipient_domain
from mailpipe.plugins.direct.hosts import interleave
from mailpipe.plugins.direct.mx import address_literal, order_records
from mailpipe.plugins.direct.options import DirectOptions, parse_dns_server


def test_mx_records_sorted_by_preference_and_equal_ones_shuffled():
    records = [(20, "c"), (10, "a"), (10, "b"), (30, "d"), (10, "e")]
    seen = set()
    for seed in range(50):
        ordered = order_records(records, random.Random(seed))
        assert [p for p, _ in ordered] == [10, 10, 10, 20, 30]
        assert [n for _, n in ordered][3:] == ["c", "d"]
        seen.add(tuple(n for _, n in ordered[:3]))
    assert len(seen) > 1  # equal preferences do not always come out in the same order


def test_addresses_interleave_families_preferring_ipv6():
    addrs = ["192.0.2.1", "192.0.2.2", "2001:db8::1"]
    assert interleave(addrs) == ["2001:db8::1", "192.0.2.1", "192.0.2.2"]
    assert interleave(addrs, prefer_ipv6=False) == ["192.0.2.1", "2001:db8::1", "192.0.2.2"]


@pytest.mark.parametrize("text, expected", [
    ("192.0.2.53", ("192.0.2.53", 53)),
    ("127.0.1.53:2753", ("127.0.1.53", 2753)),
    ("::1", ("::1", 53)),
    ("[::1]:5353", ("::1", 5353)),
])
def test_dns_server_entries(text, expected):
    assert parse_dns_server(text) == expected


@pytest.mark.parametrize("bad", ["dns.example", "192.0.2.53:99999", "[::1]:x"])
def test_bad_dns_server_entries_are_refused(bad):
    with pytest.raises(ValidationError):
        DirectOptions(dns_servers=[bad])


def test_recipient_domains_and_literals():
    assert recipient_domain("Bob@Example.TEST.") == "example.test"
    assert recipient_domain("postmaster") == ""
    assert address_literal("[192.0.2.1]") == "192.0.2.1"
    assert address_literal("[IPv6:2001:db8::1]") == "2001:db8::1"
    assert address_literal("example.test") is None


def test_embedded_default_config_builds_direct_with_no_options():
    gw = Gateway(load_config(None))
    direct = next(p for p in gw.plugins if p.name == "direct")
    assert direct.port == 25 and direct.opts.tls == "opportunistic" and direct.opts.dns_servers == []
