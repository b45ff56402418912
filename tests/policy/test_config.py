"""Bad configuration of the policy stages is refused before anything starts, with the key path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from mailpipe.core.config import load_config
from mailpipe.core.errors import ConfigError

SMARTHOST = {"smarthost": {"server": "smtp.isp.example"}}


@pytest.mark.parametrize("chain, error", [
    ([{"smarthost": {"server": "a.example", "limits": [{"per": "account", "max": 100}]}}],
     "chain[0].smarthost.limits[0]: expected max and every"),
    ([{"smarthost": {"server": "a.example", "limits": [{"per": "login", "max": 1, "every": "1h"}]}}],
     "chain[0].smarthost.limits[0].per: expected one of 'account', 'sender' or 'domain', got 'login'"),
    ([{"smarthost": {"server": "a.example", "limits": [{"per": "account", "connections": 2, "max": 5}]}}],
     "chain[0].smarthost.limits[0]: a limit is either {connections: N} or {max: N, every: DURATION}"),
    ([{"smarthost": {"server": "a.example", "limits": [{"per": "sender", "max": 5, "every": "soon"}]}}],
     "chain[0].smarthost.limits[0].every: expected a duration"),
    ([{"smarthost": {"server": "a.example", "limits": [{"per": "sender", "max": 0, "every": "1h"}]}}],
     "chain[0].smarthost.limits[0].max: expected a number at least 1, got 0"),
    ([{"smarthost": {"server": "a.example", "backoff": {"initial": "1h", "max": "1m"}}}],
     "chain[0].smarthost.backoff: max must not be shorter than initial"),
    ([{"direct": {"limits": [{"per": "account", "max": 1, "every": "1h"}]}}],
     "chain[0].direct.limits[0].per: expected one of 'sender' or 'domain', got 'account'"),
    ([{"clamav": {}}], "chain[0].clamav: expected exactly one of address"),
    ([{"clamav": {"address": "127.0.0.1:3310", "socket": "/run/clamav/clamd.ctl"}}],
     "chain[0].clamav: expected exactly one of address"),
    ([{"clamav": {"address": "127.0.0.1:99999"}}], "chain[0].clamav.address: expected a port number"),
    ([{"clamav": {"socket": "/x", "timeout": "2m"}}], "chain[0].clamav.timeout: at most 50s"),
    ([{"clamav": {"socket": "/x", "on_error": "ignore"}}],
     "chain[0].clamav.on_error: expected one of 'tempfail' or 'accept', got 'ignore'"),
    ([SMARTHOST, {"smarthost": {"name": "big isp", "server": "b.example"}}],
     "chain[1].smarthost.name: expected an entry name"),
    ([SMARTHOST, SMARTHOST], "chain: plugin 'smarthost' is listed more than once; give each entry its own name"),
    ([SMARTHOST, {"smarthost": {"name": "smarthost", "server": "b.example"}}], "listed more than once"),
])
def test_refused_with_key_path(workdir: Path, chain: list[Any], error: str) -> None:
    path = workdir / "mailpipe.yaml"
    path.write_text(yaml.safe_dump({"state_dir": "state", "chain": chain}))
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert error in str(refused.value)


def test_named_entries(workdir: Path) -> None:
    path = workdir / "mailpipe.yaml"
    path.write_text(yaml.safe_dump({"state_dir": "state", "chain": [
        {"rules": {"rules": [{"match": {"size_over": "10M"}, "action": {"route_via": "smarthost-big"}}]}},
        SMARTHOST, {"smarthost": {"name": "smarthost-big", "server": "big.isp.example", "port": 587}}]}))
    config = load_config(path)
    assert [(s.name, s.plugin) for s in config.chain] == [
        ("rules", "rules"), ("smarthost", "smarthost"), ("smarthost-big", "smarthost")]
    assert config.chain[2].options.port == 587
