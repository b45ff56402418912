"""The smarthost examples load (with their secrets in the environment) and route through the smarthost."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailpipe.core.config import load_config

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("smarthost*.yaml")))
def test_example_loads(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each smarthost example loads with its secrets from the environment and names its login mode."""
    for var in ("ISP_PASSWORD", "ALICE_PASSWORD", "BOB_PASSWORD"):
        monkeypatch.setenv(var, "example-secret")
    config = load_config(EXAMPLES / name)
    assert config.chain[0].name == "smarthost"
    assert config.chain[0].options.auth.mode in name.replace("smarthost-", "").replace(".yaml", "") or \
        config.chain[0].options.auth.mechanism == "xoauth2"
