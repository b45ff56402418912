"""Every error of a configuration file at once, one ``error:`` line each, in mailpipe's own words.

Real ``pipeline check`` and ``pipeline serve`` processes: exit status 2, one line per problem
naming the file and the key path, no pydantic sentence, no value quoted twice, a "did you
mean" for a mistyped key or plugin, every unset environment variable, keys given twice in
the YAML, and never a secret's value.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.peers.mailpipe import run_pipeline
from tests.peers.net import free_port

from .helpers import write

MANY_MISTAKES = """\
hostnme: gw.test
state_dir: {state}
listen: ["127.0.0.1:{port}"]
delivery: {{port: twenty-five, timeout: 5 minutez, send_immediately: maybe}}
log: {{level: loud}}
chain:
  - smarthots: {{}}
  - smarthost:
      server: "${{MAILPIPE_ADMIN_UNSET_A}}"
      port: 99999
      tls: yes
      auth: {{mode: login, username: gw, password: "${{MAILPIPE_ADMIN_UNSET_B}}"}}
      idle_timout: 30s
  - retry: {{every: fortnightly}}
"""

EXPECTED = [
    "hostnme: unknown key (did you mean 'hostname'?)",
    "delivery.port: expected a whole number, got 'twenty-five'",
    "delivery.timeout: expected a duration such as 30s, 15m, 4h or 2d, got '5 minutez'",
    "delivery.send_immediately: expected true or false, got 'maybe'",
    "log.level: expected one of 'debug', 'info', 'warning' or 'error', got 'loud'",
    "chain[0]: unknown plugin 'smarthots' (did you mean 'smarthost'? installed:",
    "chain[1].smarthost.server: environment variable MAILPIPE_ADMIN_UNSET_A is not set",
    "chain[1].smarthost.auth.password: environment variable MAILPIPE_ADMIN_UNSET_B is not set",
    "chain[1].smarthost.port: expected a number at most 65535, got 99999",
    "chain[1].smarthost.tls: expected one of 'none', 'starttls' or 'implicit', got true (YAML reads yes",
    "chain[1].smarthost.idle_timout: unknown key (did you mean 'idle_timeout'?)",
    "chain[2].retry.every: expected a duration such as 30s, 15m, 4h or 2d, got 'fortnightly'",
]
PYDANTIC_WORDS = ("Input should", "valid integer", "Value error", "Field required", "Extra inputs",
                  "unable to parse", "validation error", "pydantic")


def env_without(*names: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in names}


def test_every_error_of_a_file_at_once_in_plain_words(tmp_path: Path) -> None:
    path = write(tmp_path / "mailpipe.yaml", MANY_MISTAKES.format(state=tmp_path / "state", port=free_port()))
    env = env_without("MAILPIPE_ADMIN_UNSET_A", "MAILPIPE_ADMIN_UNSET_B")
    outputs = []
    for command in ("check", "serve"):
        res = run_pipeline(path, command, check=False, env=env, timeout=30)
        assert res.returncode == 2, (command, res.stdout, res.stderr)
        lines = res.stderr.splitlines()
        assert all(line.startswith(f"error: {path}: ") for line in lines), res.stderr
        for fragment in EXPECTED:
            assert sum(fragment in line for line in lines) == 1, (fragment, res.stderr)
        assert len(lines) == len(EXPECTED), res.stderr
        for word in PYDANTIC_WORDS:
            assert word not in res.stderr, (word, res.stderr)
        assert res.stderr.count("5 minutez") == 1 and "(got" not in res.stderr
        assert "Traceback" not in res.stderr and res.stdout == ""
        outputs.append(res.stderr)
    assert outputs[0] == outputs[1], "check and serve refuse with the same words"
    assert not (tmp_path / "state").exists()


def test_duplicate_yaml_keys_are_refused_with_their_lines(tmp_path: Path) -> None:
    text = (f"hostname: gw.test\nstate_dir: {tmp_path / 'state'}\nhostname: other.test\n"
            "chain:\n  - retry:\n      every: 15m\n      every: 1h\n")
    path = write(tmp_path / "dup.yaml", text)
    res = run_pipeline(path, "check", check=False)
    assert res.returncode == 2
    assert res.stderr.splitlines() == [
        f"error: {path}: line 3: key 'hostname' is given twice (first at line 1); remove one",
        f"error: {path}: line 7: key 'every' is given twice (first at line 6); remove one",
    ]


def test_a_secret_is_never_repeated_in_an_error(tmp_path: Path) -> None:
    config = {"state_dir": str(tmp_path / "state"),
              "chain": [{"smarthost": {"server": "smtp.isp.test", "auth": {
                  "mode": "login", "username": "gw", "password": 9081726354}}}]}
    path = write(tmp_path / "secret.yaml", config)
    res = run_pipeline(path, "check", check=False)
    assert res.returncode == 2
    assert res.stderr.startswith(f"error: {path}: chain[0].smarthost.auth.password: expected text"), res.stderr
    assert "9081726354" not in res.stderr


def test_unknown_nested_key_and_a_wrong_shape(tmp_path: Path) -> None:
    config = {"state_dir": str(tmp_path / "state"), "intake": {"max_mesage_size": "10M"},
              "listen": "127.0.0.1:2525", "chain": [{"direct": ["not", "a", "mapping"]}]}
    path = write(tmp_path / "shape.yaml", config)
    res = run_pipeline(path, "check", check=False)
    assert res.returncode == 2
    lines = res.stderr.splitlines()
    assert f"error: {path}: intake.max_mesage_size: unknown key (did you mean 'max_message_size'?)" in lines
    assert f"error: {path}: listen: expected a list, got '127.0.0.1:2525'" in lines
    assert f"error: {path}: chain[0].direct: expected the options of direct as a mapping (key: value), got list" \
        in lines
