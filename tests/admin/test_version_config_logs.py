"""``pipeline --version``, ``pipeline config`` (postconf), and the process log in ``text`` and ``json`` format.

The startup line names the version, pid, configuration and queue; ``log: {format: json}``
writes one JSON object per line; the text format ends each line with stable ``key=value``
fields (id, from, to, relay, delay, dsn, status); the metrics plugin logs its own URL.
"""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path
from typing import Any

from tests.peers.mailpipe import MailpipeProcess, pipeline_cmd, run_pipeline
from tests.peers.net import free_port, wait_until
from tests.peers.sink import RecordingSink
from tests.promises.operations.helpers import submit

from .helpers import base_config, write

SECRET = "sekrit-pw-4711"
HASH = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo"


def test_version() -> None:
    import subprocess

    res = subprocess.run(pipeline_cmd("--version"), capture_output=True, text=True, timeout=30, check=True)
    assert res.stdout == f"mailpipe {version('mailpipe')}\n"


def test_config_prints_every_key_with_defaults_and_masks_secrets(tmp_path: Path) -> None:
    config = base_config(tmp_path, [
        {"smarthost": {"server": "smtp.isp.test", "auth": {"mode": "login", "username": "gw", "password": SECRET}}},
        {"console": {"listen": f"127.0.0.1:{free_port()}", "users": [{"username": "admin", "password_hash": HASH}]}},
        {"retry": {"every": "10m"}},
    ], relay={"users": [{"username": "relay", "password_hash": HASH}]})
    path = write(tmp_path / "mailpipe.yaml", config)
    shown = json.loads(run_pipeline(path, "config", "--json").stdout)
    assert list(shown)[:3] == ["hostname", "state_dir", "listen"]
    assert shown["delivery"]["concurrency"] == 20 and shown["intake"]["max_recipients"] == 1000
    assert shown["queue"] == {"sqlite": {"path": None, "busy_timeout": 10.0, "history_days": 30.0}}
    smarthost, console, retry = (next(iter(entry.values())) for entry in shown["chain"])
    assert smarthost["auth"]["password"] == "********" and smarthost["max_connections"] == 4
    assert console["users"][0]["password_hash"] == "********"
    assert shown["relay"]["users"][0]["password_hash"] == "********"
    assert retry == {"every": 600.0, "expire_after": 432000.0, "backoff": None, "warn_after": None}
    text = run_pipeline(path, "config").stdout
    assert text.startswith(f"# {path} (with defaults)\nhostname: gw.test\n")
    changed = json.loads(run_pipeline(path, "config", "-n", "--json").stdout)
    assert "delivery" not in changed and changed["chain"][2] == {"retry": {"every": 600.0}}
    for out in (text, json.dumps(shown), json.dumps(changed)):
        assert SECRET not in out and "$argon2" not in out


def serve_and_deliver(tmp_path: Path, log: dict[str, Any]) -> tuple[MailpipeProcess, str]:
    with RecordingSink("127.0.1.45") as sink:
        sink.behaviour.rcpt["later@example.net"] = "450 4.2.1 try later"
        metrics = free_port()
        config = base_config(tmp_path, [{"smarthost": {"server": sink.host, "port": sink.port, "tls": "none"}},
                                        {"retry": {"every": "1h", "expire_after": "2d"}},
                                        {"metrics": {"listen": f"127.0.0.1:{metrics}"}}], log=log)
        gw = MailpipeProcess(tmp_path / "gw", config)
        with gw:
            mid = submit(gw, ["bob@example.net", "later@example.net"], sender="alice@example.org")
            sink.wait_for(1)
            wait_until(lambda: "message.deferred" in gw.log_text(), 15, "both outcomes logged", gw.log_text)
    return gw, mid


def test_json_log_one_object_per_line(tmp_path: Path) -> None:
    gw, mid = serve_and_deliver(tmp_path, {"format": "json"})
    records = [json.loads(line) for line in gw.log_text().splitlines()]
    assert all(set(r) >= {"time", "level", "logger", "event", "id", "text", "fields"} for r in records)
    started = next(r for r in records if r["event"] == "gateway.started")
    assert started["fields"]["version"] == version("mailpipe") and started["fields"]["pid"] == gw.proc.pid
    assert started["fields"]["config"] == str(gw.config_path)
    assert started["fields"]["queue"] == str(tmp_path / "state" / "queue.sqlite3")
    accepted = next(r for r in records if r["logger"] == "mailpipe.intake" and r["id"] == mid)
    assert accepted["fields"] == {"id": mid, "from": "alice@example.org", "client": "127.0.0.1", "nrcpt": 2,
                                  "size": accepted["fields"]["size"]}
    delivered = next(r for r in records if r["event"] == "message.delivered")
    assert delivered["id"] == mid and delivered["time"].endswith("Z")
    fields = delivered["fields"]
    assert (fields["from"], fields["to"], fields["dsn"], fields["status"]) == (
        "alice@example.org", "bob@example.net", "2.0.0", "sent")
    assert fields["relay"].startswith("127.0.1.45") and isinstance(fields["delay"], float)
    deferred = next(r for r in records if r["event"] == "message.deferred")
    assert (deferred["fields"]["to"], deferred["fields"]["dsn"], deferred["fields"]["status"]) == (
        "later@example.net", "4.2.1", "deferred")
    [metrics] = [r for r in records if "/metrics" in r["text"]]
    assert metrics["logger"] == "mailpipe.plugins.metrics" and metrics["level"] == "info"


def test_text_log_has_stable_key_value_fields(tmp_path: Path) -> None:
    gw, mid = serve_and_deliver(tmp_path, {"format": "text"})
    lines = gw.log_text().splitlines()
    [started] = [line for line in lines if "gateway.started:" in line]
    assert f"mailpipe {version('mailpipe')} started (pid {gw.proc.pid}): config {gw.config_path}, queue " \
           f"{tmp_path / 'state' / 'queue.sqlite3'}" in started
    [delivered] = [line for line in lines if "message.delivered:" in line]
    keys = [part.split("=", 1)[0] for part in delivered.split(" ") if "=" in part and not part.startswith("<")]
    assert keys[:7] == ["id", "from", "to", "relay", "delay", "dsn", "status"], delivered
    assert f" id={mid} from=<alice@example.org> to=<bob@example.net> relay=127.0.1.45" in delivered
    assert " dsn=2.0.0 status=sent" in delivered
    [accepted] = [line for line in lines if "accepted from" in line]
    assert accepted.endswith(f"id={mid} from=<alice@example.org> client=127.0.0.1 nrcpt=2 "
                             f"size={accepted.rsplit('size=', 1)[1]}")
    assert any("INFO mailpipe.plugins.metrics: metrics on http://127.0.0.1:" in line for line in lines)
