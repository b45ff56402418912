"""The ``pipeline`` CLI as a package: shared ``-c``/``--json``, queue commands that open only the queue,
``plugins -c`` marking what a configuration uses, and a ``--help`` that imports nothing heavy.

Every command runs as a real ``pipeline`` process on a real SQLite queue.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from mailpipe.core.config import load_config
from mailpipe.core.errors import ConfigError
from mailpipe.core.events import Event
from mailpipe.core.ids import new_queue_id
from mailpipe.core.message import Message, Recipient, SessionInfo
from mailpipe.core.runtime import open_queue
from tests.peers.mailpipe import pipeline_cmd, run_pipeline
from tests.peers.net import free_port

from .helpers import make_message


def write_config(tmp: Path, chain: list[dict[str, Any]], name: str = "mailpipe.yaml") -> Path:
    path = tmp / name
    path.write_text(yaml.safe_dump({
        "hostname": "gw.test", "listen": [f"127.0.0.1:{free_port()}"], "state_dir": str(tmp / "state"),
        "chain": chain,
    }, sort_keys=False))
    return path


def smarthost(**options: Any) -> dict[str, Any]:
    return {"smarthost": {"server": "127.0.0.1", "port": free_port(), "tls": "none", **options}}


RETRY = {"retry": {"every": "15m", "expire_after": "2d"}}


def queue_messages(config_path: Path, count: int) -> list[str]:
    """Store ``count`` messages (and one event) straight into the configuration's queue; their IDs."""

    async def store() -> list[str]:
        queue = await open_queue(load_config(config_path, only_queue=True))
        ids = []
        try:
            for n in range(count):
                data = make_message(f"cli {n}")
                message = Message(new_queue_id(), "alice@example.org", [Recipient(f"bob{n}@example.net")],
                                  time.time(), size=len(data), session=SessionInfo("127.0.0.1", "client.test"))
                await queue.store(message, data)
                ids.append(message.id)
            queue.add_event(Event(time.time(), "test.stored", f"{count} message(s) stored by the test", "warning"))
        finally:
            await queue.close()
        return ids

    return asyncio.run(store())


def cli_json(config: Path | None, *args: str) -> Any:
    return json.loads(run_pipeline(config, *args, "--json").stdout)


@pytest.fixture
def broken_chain(tmp_path: Path) -> tuple[Path, list[str]]:
    """A configuration whose smarthost is refused (its CA file is no certificate), two queued messages."""
    (tmp_path / "bad-ca.pem").write_text("not a certificate\n")
    path = write_config(tmp_path, [smarthost(tls="starttls", ca_file="bad-ca.pem"), RETRY])
    with pytest.raises(ConfigError, match="bad-ca.pem: not a PEM file"):  # what check, route and serve meet
        load_config(path)
    return path, queue_messages(path, 2)


def test_queue_commands_open_only_the_queue(broken_chain: tuple[Path, list[str]]):
    path, ids = broken_chain
    listed = cli_json(path, "queue", "list")
    assert [(m["id"], m["recipients"]) for m in listed] == [(i, {"pending": 1}) for i in ids]
    shown = cli_json(path, "queue", "show", ids[0])
    assert shown["client"]["peer"] == "127.0.0.1" and shown["recipients"][0]["address"] == "bob0@example.net"
    assert "<bob1@example.net>  pending, 0 attempt(s)" in run_pipeline(path, "queue", "show", ids[1]).stdout
    assert cli_json(path, "queue", "hold", "--all")["count"] == 2
    assert cli_json(path, "queue", "release", ids[0]) == {"command": "release", "count": 1, "server_woken": False}
    assert cli_json(path, "queue", "retry", "--all")["count"] == 1  # the held one stays held
    assert cli_json(path, "queue", "delete", ids[1])["count"] == 1
    assert [m["id"] for m in cli_json(path, "queue", "list")] == [ids[0]]
    assert cli_json(path, "log") == []
    assert [e["kind"] for e in cli_json(path, "events")] == [  # and the audit trail of each action
        "test.stored", "cli.hold", "cli.hold", "cli.release", "cli.retry", "cli.delete"]
    stats = cli_json(path, "stats")
    assert (stats["queue_depth"], stats["recipients"]) == (1, {"pending": 1})
    for args in (["queue", "list"], ["log"], ["events", "--level", "warning"], ["stats"]):
        res = run_pipeline(path, *args)
        assert "Traceback" not in res.stderr, (args, res.stderr)


def test_unknown_message_and_bad_usage_keep_their_exit_status(broken_chain: tuple[Path, list[str]]):
    path, _ = broken_chain
    missing = run_pipeline(path, "queue", "show", "NOSUCHID", check=False)
    assert (missing.returncode, missing.stderr) == (1, "error: no message NOSUCHID in the queue\n")
    for args in (["queue", "hold"], ["queue", "delete", "--state", "held"], ["events", "--since", "fortnightly"]):
        assert run_pipeline(path, *args, check=False).returncode == 2, args


def test_config_option_before_or_after_the_command(broken_chain: tuple[Path, list[str]], tmp_path: Path):
    path, ids = broken_chain

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(pipeline_cmd(*args), capture_output=True, text=True, timeout=60)

    forms = [("-c", str(path), "queue", "list"), ("queue", "-c", str(path), "list"),
             ("queue", "list", "-c", str(path)), ("--config", str(path), "queue", "list", "--json")]
    outputs = [run(*args) for args in forms]
    assert all(r.returncode == 0 for r in outputs), [r.stderr for r in outputs]
    assert outputs[0].stdout == outputs[1].stdout == outputs[2].stdout
    assert all(i in outputs[0].stdout for i in ids)
    assert [m["id"] for m in json.loads(outputs[3].stdout)] == ids
    # the one nearest the command wins
    missing = tmp_path / "missing.yaml"
    assert run("-c", str(missing), "queue", "list", "-c", str(path)).stdout == outputs[0].stdout
    refused = run("-c", str(path), "queue", "list", "-c", str(missing))
    assert refused.returncode == 2
    assert refused.stderr == f"error: {missing}: cannot read config file: No such file or directory\n"
    for command in (["check"], ["plugins"], ["route", "x@example.net"], ["log"], ["events"], ["stats"]):
        res = run(*command, "-c", str(missing))
        assert (res.returncode, res.stderr.startswith(f"error: {missing}")) == (2, True), command


def test_plugins_marks_what_the_configuration_uses(tmp_path: Path):
    path = write_config(tmp_path, [smarthost(), RETRY])
    plain = {r["name"]: r for r in cli_json(None, "plugins")}
    assert "in_config" not in plain["smarthost"]
    rows = {r["name"]: r for r in cli_json(path, "plugins")}
    assert {n for n, r in rows.items() if r["in_config"]} == {"smarthost", "retry", "sqlite"}
    assert (rows["smarthost"]["used_as"], rows["retry"]["used_as"], rows["sqlite"]["used_as"]) == \
        (["chain[0]"], ["chain[1]"], ["queue"])
    assert rows["direct"]["used_as"] == [] and rows["direct"]["hooks"] == plain["direct"]["hooks"]
    text = run_pipeline(path, "plugins").stdout.splitlines()
    assert text[0].split() == ["IN", "CONFIG", "PLUGIN", "DISTRIBUTION", "VERSION", "HOOKS"]
    assert any(line.split()[:2] == ["chain[0]", "smarthost"] for line in text)
    assert any(line.split()[:2] == ["-", "direct"] for line in text)
    assert not any(line.startswith(("-", "IN CONFIG")) for line in run_pipeline(None, "plugins").stdout.splitlines())
    # the configuration is really read: a refused one is refused
    bad = tmp_path / "bad.yaml"
    bad.write_text(path.read_text().replace("hostname:", "hostnme:"))
    res = run_pipeline(bad, "plugins", check=False)
    assert res.returncode == 2 and res.stderr.startswith(f"error: {bad}: hostnme: unknown key")


def test_json_on_every_data_command(tmp_path: Path):
    path = write_config(tmp_path, [smarthost(), RETRY])
    [queued] = queue_messages(path, 1)
    checked = cli_json(path, "check")
    assert (checked["queue"], checked["chain"]) == ("sqlite", ["smarthost", "retry"])
    assert checked["hooks"]["route"] == ["smarthost"]
    [route] = cli_json(path, "route", "r@remote.test")
    assert (route["recipient"], route["plugin"], route["kind"]) == (["r@remote.test"], "smarthost", "smarthost")
    assert route["tls"] == "none" and route["auth"] == "none"
    assert [r["name"] for r in cli_json(path, "plugins")] == [r["name"] for r in cli_json(None, "plugins")]
    assert [m["id"] for m in cli_json(path, "queue", "list")] == [queued]
    assert cli_json(path, "queue", "list", "--state", "held") == []
    assert cli_json(path, "queue", "show", queued)["id"] == queued
    for command, count in (("hold", 1), ("release", 1), ("retry", 1), ("delete", 1)):
        ids = ["--all"] if command != "delete" else [queued]
        assert cli_json(path, "queue", command, *ids) == {"command": command, "count": count, "server_woken": False}
    assert cli_json(path, "log", "--since", "1h") == []
    assert cli_json(path, "events", "--kind", "test")[0]["text"] == "1 message(s) stored by the test"
    stats = cli_json(path, "stats", "--since", "1d")
    assert stats["queue_depth"] == 0 and stats["period"]["seconds"] == 86400


def test_help_imports_nothing_heavy():
    """``pipeline --help`` loads the CLI modules only: no gateway, aiosmtpd, pydantic, uvloop or asyncio."""
    probe = "\n".join([
        "import sys",
        "from mailpipe.core.cli import main",
        "try:",
        "    main(['--help'])",
        "except SystemExit:",
        "    pass",
        "heavy = ('aiosmtpd', 'pydantic', 'uvloop', 'asyncio', 'pluggy', 'yaml')",
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy or m.startswith('mailpipe.core.g')),"
        " file=sys.stderr)",
    ])
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert "Commands:" in res.stdout
    assert res.stderr.strip() == "[]"
