"""The policy stages in a real ``pipeline serve``, as an administrator meets them: mail over SMTP, the
CLI, and the console's Queues, message and Statistics pages."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from mailpipe.core.intake.auth import hash_password
from tests.console.conftest import PASSWORD, USER, poll
from tests.console.test_console_http import login
from tests.peers.clamd import SIGNATURE, ClamdPeer
from tests.peers.mailpipe import MailpipeProcess
from tests.peers.net import free_port
from tests.peers.sink import RecordingSink

from .helpers import eicar_mail, mail, send, smarthost


def test_quarantine_and_limits_seen_by_an_administrator(workdir: Path, clamd: ClamdPeer) -> None:
    with RecordingSink() as sink:
        smtp, console = free_port(), free_port()
        proc = MailpipeProcess(workdir / "mailpipe", {
            "hostname": "gw.policy.test", "state_dir": str(workdir / "mailpipe" / "state"),
            "listen": [f"127.0.0.1:{smtp}"],
            "chain": [
                {"rules": {"rules": [{"name": "tag", "match": {"header": {"Subject": "report"}},
                                      "action": {"add_header": {"X-Policy": "checked"}}}]}},
                {"clamav": {"address": clamd.address, "action": "quarantine"}},
                smarthost(sink.port, limits=[{"per": "account", "max": 2, "every": "1h"}]),
                {"console": {"listen": f"127.0.0.1:{console}",
                             "users": [{"username": USER, "password_hash": hash_password(PASSWORD)}]}},
            ]})
        with proc:
            for i in range(3):
                assert send(smtp, mail(subject=f"report {i}"))[0] == 250
            assert send(smtp, eicar_mail())[0] == 250  # quarantined, not refused
            sink.wait_for(2)
            rows = poll(lambda: [r for r in proc.cli_json("queue", "list")
                                 if r["recipients"].get("deferred") or r["recipients"].get("held")], 30,
                        "one deferred and one held message")
            by_state = {next(iter(r["recipients"])): r["id"] for r in rows}
            assert set(by_state) == {"deferred", "held"}
            deferred = proc.cli_json("queue", "show", by_state["deferred"])
            reply = deferred["recipients"][0]["last_reply"]
            assert reply.startswith(f"451 4.7.0 limit 2/h for 127.0.0.1:{sink.port} reached; next slot ")
            held = proc.cli_json("queue", "show", by_state["held"])
            assert held["held"] == f"quarantined: virus {SIGNATURE}.UNOFFICIAL found by clamav"
            assert all(b"X-Policy: checked" in m.data for m in sink.messages)

            with httpx.Client(base_url=f"http://127.0.0.1:{console}", follow_redirects=True, timeout=30) as client:
                login(client)
                queues = client.get("/queues").text
                assert f"quarantined: virus {SIGNATURE}.UNOFFICIAL found by clamav" in queues
                page = client.get(f"/queues/{by_state['held']}").text
                assert 'id="quarantine"' in page and f"virus {SIGNATURE}.UNOFFICIAL" in page
                stats = client.get("/stats").text
                assert f"2/h for 127.0.0.1:{sink.port}" in stats
                assert "2 of 2</span> full: mail waits" in stats
            events = json.loads(proc.cli("events", "--json").stdout)
            kinds = {e["kind"] for e in events}
            assert {"message.held", "clamav.infected", "limits.reached"} <= kinds
