"""`pipeline queue list|show|retry|delete|hold|release` and the embedded default."""

from __future__ import annotations

import smtplib
import subprocess

from tests.peers.mailpipe import MailpipeProcess, pipeline_cmd, port_open
from tests.peers.net import wait_until
from tests.peers.sink import RecordingSink

from .helpers import make_message


def test_hold_release_retry_delete(mailpipe_factory):
    with RecordingSink("127.0.1.38") as sink:
        sink.behaviour.rcpt["b@example.net"] = "450 4.2.1 try later"
        gw = mailpipe_factory({"hostname": "gw.test",
                               "chain": [{"smarthost": {"server": sink.host, "port": sink.port, "tls": "none"}},
                                         {"retry": {"every": "1h", "expire_after": "2d"}}]})
        with gw:
            host, port = gw.address
            ids = []
            with smtplib.SMTP(host, port) as client:
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


def test_embedded_default_serves_on_2525(workdir):
    """No config file: SQLite queue in the state folder, intake on 127.0.0.1:2525."""
    env_state = workdir / "default-state"
    proc = MailpipeProcess(workdir / "default", {"listen": ["127.0.0.1:2525"]},
                           env={"MAILPIPE_STATE_DIR": str(env_state)})
    log = open(proc.log_path, "wb")
    import os

    p = subprocess.Popen(pipeline_cmd("serve"), stdout=log, stderr=subprocess.STDOUT,
                         env={**os.environ, "MAILPIPE_STATE_DIR": str(env_state)})
    try:
        wait_until(lambda: port_open("127.0.0.1", 2525) or p.poll() is not None, 20, "default intake")
        assert p.poll() is None, proc.log_text()
        with smtplib.SMTP("127.0.0.1", 2525) as client:
            code, caps = client.ehlo("client.test")
            assert code == 250
            client.mail("a@example.org")
            client.rcpt("b@nowhere.invalid")
            code, text = client.data(make_message("default"))
        assert code == 250
        queue_id = text.decode().rsplit(" ", 1)[-1]
        assert (env_state / "queue.sqlite3").exists()
        shown = subprocess.run(pipeline_cmd("queue", "show", queue_id, "--json"), capture_output=True, text=True,
                               env={**os.environ, "MAILPIPE_STATE_DIR": str(env_state)}, timeout=30)
        assert shown.returncode == 0, shown.stderr
        assert '"address": "b@nowhere.invalid"' in shown.stdout
        assert '"sender": "a@example.org"' in shown.stdout
        p.terminate()
        assert p.wait(30) == 0
    finally:
        if p.poll() is None:
            p.kill()
        log.close()
