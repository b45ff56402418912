"""`pipeline queue list|show|retry|delete|hold|release` and the embedded default."""

from __future__ import annotations

import json
import smtplib
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import yaml

from tests.peers.fixtures import DnsmasqFactory
from tests.peers.mailpipe import MailpipeProcess, run_pipeline
from tests.peers.net import free_port, wait_until
from tests.peers.sink import RecordingSink

from .helpers import make_message

Factory = Callable[..., MailpipeProcess]


def test_hold_release_retry_delete(mailpipe_factory: Factory) -> None:
    """hold/delete/release/retry on deferred mail through the real CLI while `pipeline serve` runs."""
    with RecordingSink("127.0.1.38") as sink:
        sink.behaviour.rcpt["b@example.net"] = "450 4.2.1 try later"
        gw = mailpipe_factory({"hostname": "gw.test",
                               "chain": [{"smarthost": {"server": sink.host, "port": sink.port, "tls": "none"}},
                                         {"retry": {"every": "1h", "expire_after": "2d"}}]})
        with gw:
            host, port = gw.address
            ids = []
            with smtplib.SMTP(host, port, timeout=10) as client:
                client.ehlo("client.test")
                for n in range(3):
                    client.mail("a@example.org")
                    client.rcpt("b@example.net")
                    ids.append(client.data(make_message(f"msg {n}"))[1].decode().rsplit(" ", 1)[-1])

            def states() -> dict[str, dict[str, int]]:
                return {m["id"]: m["recipients"] for m in gw.cli_json("queue", "list")}

            wait_until(lambda: states() == {i: {"deferred": 1} for i in ids}, 15, "three deferred")
            assert "3 recipient(s) held" in gw.cli("queue", "hold", "--all").stdout
            assert states() == {i: {"held": 1} for i in ids}
            assert gw.cli_json("queue", "delete", ids[2])["count"] == 1
            assert set(states()) == set(ids[:2])
            assert gw.cli("queue", "show", ids[2], check=False).returncode == 1

            del sink.behaviour.rcpt["b@example.net"]
            released = gw.cli_json("queue", "release", ids[0])
            assert released["count"] == 1
            sink.wait_for(1)
            wait_until(lambda: set(states()) == {ids[1]}, 10, "released message delivered")
            assert states()[ids[1]] == {"held": 1}
            # retry does not touch held mail; release --all then delivers it
            assert gw.cli_json("queue", "retry", "--all")["count"] == 0
            gw.cli("queue", "release", "--all")
            sink.wait_for(2)
            wait_until(lambda: states() == {}, 10, "queue empty")
            shown = gw.cli_json("queue", "show", ids[1])
            assert [a["outcome"] for a in shown["attempts"]] == ["temporary", "delivered"]
            assert "queue is empty" in gw.cli("queue", "list").stdout


def test_embedded_default_serves_on_a_free_port_with_a_local_dns(workdir: Path, mailpipe_factory: Factory,
                                                                 dnsmasq_factory: DnsmasqFactory) -> None:
    """No config file: the embedded default (intake 127.0.0.1:2525, SQLite queue in $MAILPIPE_STATE_DIR, direct
    then retry). Served as is but on a free port and with a local DNS (so the test needs neither port 2525 nor
    the system resolver), it queues mail there, and the CLI without a config file reads that queue."""
    state = workdir / "default-state"
    env = {"MAILPIPE_STATE_DIR": str(state)}
    check = run_pipeline(None, "check", env=env).stdout
    assert "configuration <embedded default>: OK" in check and "listen: 127.0.0.1:2525" in check
    checked = json.loads(run_pipeline(None, "check", "--json", env=env).stdout)
    assert (checked["config"], checked["queue"], checked["chain"]) == ("<embedded default>", "sqlite",
                                                                       ["direct", "retry"])

    dns = dnsmasq_factory(["local=/invalid/", "local=/example.org/"])  # both NXDOMAIN, nothing forwarded
    config = yaml.safe_load(resources.files("mailpipe.core").joinpath("default.yaml").read_text())
    config["listen"] = [f"127.0.0.1:{free_port()}"]
    [direct] = [entry["direct"] for entry in config["chain"] if "direct" in entry]
    direct["dns_servers"] = [f"{dns.address}:{dns.port}"]
    config["state_dir"] = str(state)  # what $MAILPIPE_STATE_DIR gives the embedded default
    gw = mailpipe_factory(config, env=env)
    with gw:
        host, port = gw.address
        with smtplib.SMTP(host, port, timeout=10) as client:
            code, _caps = client.ehlo("client.test")
            assert code == 250
            client.mail("a@example.org")
            client.rcpt("b@nowhere.invalid")
            code, text = client.data(make_message("default"))
        assert code == 250
        queue_id = text.decode().rsplit(" ", 1)[-1]
        assert (state / "queue.sqlite3").exists()

        def shown() -> dict:
            res = run_pipeline(None, "queue", "show", queue_id, "--json", env=env)  # no config file
            return json.loads(res.stdout)

        wait_until(lambda: shown()["attempts"] != [], 20, "the delivery attempt", lambda: str(shown()))
        detail = shown()
    assert detail["sender"] == "a@example.org"
    assert [(r["address"], r["state"]) for r in detail["recipients"]] == [("b@nowhere.invalid", "failed")]
    [attempt] = detail["attempts"]
    assert (attempt["outcome"], attempt["code"], attempt["enhanced"]) == ("permanent", 550, "5.1.2"), attempt
    assert "NXDOMAIN" in attempt["text"]
    assert gw.proc is not None and gw.proc.returncode == 0
