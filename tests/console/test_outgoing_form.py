"""The Outgoing Mail form against the YAML: only changed keys are written, comments kept, models validate."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailpipe.core.config import load_config
from mailpipe.core.errors import ConfigError
from mailpipe.core.intake.auth import hash_password
from mailpipe.plugins.console.outgoing import apply_changes, form_values, parse_errors
from mailpipe.plugins.console.yamlfile import RoundTrip

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_every_example_round_trips_unchanged(name: str) -> None:
    text = (EXAMPLES / name).read_text()
    rt = RoundTrip(text)
    before = form_values(rt.doc)
    assert apply_changes(rt.doc, before, dict(before)) == []
    assert rt.dump() == text


def edit(text: str, **changes: str) -> tuple[str, list[str]]:
    rt = RoundTrip(text)
    before = form_values(rt.doc)
    changed = apply_changes(rt.doc, before, {**before, **changes})
    return rt.dump(), changed


def test_switch_to_direct_and_login(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = (EXAMPLES / "relay-to-smarthost.yaml").read_text()
    out, changed = edit(text, send_via="direct", dns_servers="127.0.0.53, [::1]:5353", hostname="gw.example.net")
    assert changed == ["send_via", "dns_servers", "hostname"]
    assert "smarthost" not in out.split("chain:")[1]
    assert "  - direct:\n      dns_servers: [127.0.0.53, '[::1]:5353']" in out
    assert '# "Retry failed messages every"' in out and 'hostname: "gw.example.net"' in out
    assert '# "Local host name"' in out and "# hand everything to the ISP's mail server" in out
    path = tmp_path / "c.yaml"
    path.write_text(out)
    assert load_config(path).chain[0].name == "direct"

    out, changed = edit(text, auth_required="true", auth_mode="login", username="gateway", password="s3cret")
    assert set(changed) == {"auth_required", "password", "username"}
    path.write_text(out)
    with pytest.raises(ConfigError) as err:  # login over tls from ${SMARTHOST_TLS:-starttls}: fine; check models
        monkeypatch.setenv("SMARTHOST_TLS", "none")
        load_config(path)
    errors = parse_errors(RoundTrip(out).doc, err.value)
    assert "auth_mode" in errors and "s3cret" not in str(errors)


def test_example_console_config_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILPIPE_CONSOLE_HASH", hash_password("x"))
    config = load_config(EXAMPLES / "console.yaml")
    assert [c.name for c in config.chain] == ["smarthost", "retry", "console", "metrics", "alerts"]
