"""Bad configuration is refused before anything starts, naming file, key path and expectation."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.peers.mailpipe import run_pipeline
from tests.peers.net import free_port, port_accepts

GOOD = """\
hostname: gw.test
listen: ["127.0.0.1:{port}"]
state_dir: {state}
chain:
  - smarthost: {{server: 127.0.0.1, port: 2526, tls: none}}
  - retry: {{every: 15m, expire_after: 2d}}
"""

CASES = {
    "unknown key": (
        ("hostname: gw.test", "hostname: gw.test\nhostnme: typo.test"),
        ["hostnme", "unknown key"],
    ),
    "wrong type": (
        ("state_dir:", "delivery: {port: twenty-five}\nstate_dir:"),
        ["delivery.port", "expected a whole number", "twenty-five"],
    ),
    "unknown plugin": (
        ("  - retry:", "  - virusscan: {}\n  - retry:"),
        ["chain[1]", "unknown plugin 'virusscan'", "installed:"],
    ),
    "bad duration": (
        ("every: 15m", "every: fortnightly"),
        ["chain[1].retry.every", "expected a duration such as 30s, 15m, 4h or 2d", "fortnightly"],
    ),
    "missing env": (
        ("server: 127.0.0.1", "server: \"${MAILPIPE_TEST_UNSET_VAR}\""),
        ["chain[0].smarthost.server", "environment variable MAILPIPE_TEST_UNSET_VAR is not set"],
    ),
    "plugin option type": (
        ("port: 2526", "port: [1, 2]"),
        ["chain[0].smarthost.port", "expected a whole number"],
    ),
    "yaml syntax": (
        ("hostname: gw.test", "hostname: [gw.test"),
        ["not valid YAML", "line"],
    ),
}


def write(tmp: Path, text: str) -> Path:
    path = tmp / "mailpipe.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("case", sorted(CASES))
def test_check_and_serve_refuse(case: str, tmp_path: Path):
    (old, new), expected = CASES[case]
    port = free_port()
    good = GOOD.format(port=port, state=tmp_path / "state")
    assert old in good
    path = write(tmp_path, good.replace(old, new, 1))
    env = {k: v for k, v in os.environ.items() if k != "MAILPIPE_TEST_UNSET_VAR"}
    for command in (["check"], ["serve"]):
        res = run_pipeline(path, *command, check=False, env=env, timeout=30)
        assert res.returncode == 2, (command, res.stdout, res.stderr)
        assert res.stderr.startswith(f"error: {path}"), res.stderr
        for fragment in expected:
            assert fragment in res.stderr, (fragment, res.stderr)
        assert "Traceback" not in res.stderr
    assert not port_accepts("127.0.0.1", port)
    assert not (tmp_path / "state").exists()


def test_good_config_passes(tmp_path: Path):
    path = write(tmp_path, GOOD.format(port=free_port(), state=tmp_path / "state"))
    res = run_pipeline(path, "check")
    assert "OK" in res.stdout and "smarthost -> retry" in res.stdout


def test_unreadable_file(tmp_path: Path):
    path = write(tmp_path, GOOD.format(port=free_port(), state=tmp_path / "state"))
    os.chmod(path, 0)
    if os.access(path, os.R_OK):  # root reads anything: use a folder in place of a file instead
        path.unlink()
        path.mkdir()
    res = run_pipeline(path, "check", check=False)
    assert res.returncode == 2
    assert res.stderr.startswith(f"error: {path}: cannot read config file"), res.stderr
    missing = run_pipeline(tmp_path / "nope.yaml", "serve", check=False)
    assert missing.returncode == 2 and "cannot read config file: No such file or directory" in missing.stderr


def test_config_option_before_or_after_the_command(tmp_path: Path):
    path = write(tmp_path, GOOD.format(port=free_port(), state=tmp_path / "state"))
    import subprocess

    from tests.peers.mailpipe import pipeline_cmd

    before = subprocess.run(pipeline_cmd("-c", str(path), "check"), capture_output=True, text=True, timeout=30)
    after = subprocess.run(pipeline_cmd("check", "-c", str(path)), capture_output=True, text=True, timeout=30)
    assert before.returncode == after.returncode == 0
    assert before.stdout == after.stdout


def test_missing_listener_certificate(tmp_path: Path):
    text = GOOD.format(port=free_port(), state=tmp_path / "state").replace(
        'listen: ["127.0.0.1:', 'listen: [{address: "127.0.0.1:').replace(
        '"]\nstate_dir', '", tls: starttls, cert: missing.pem, key: missing.key}]\nstate_dir')
    path = write(tmp_path, text)
    res = run_pipeline(path, "check", check=False)
    assert res.returncode == 2, res.stdout
    assert f"error: {path}: listen[0].cert: " in res.stderr and str(tmp_path / "missing.pem") in res.stderr
