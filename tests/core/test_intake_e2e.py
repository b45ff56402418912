"""`pipeline serve` as a subprocess from examples/, real clients in, a real SMTP server out."""

from __future__ import annotations

import email
import smtplib
import subprocess

from tests.peers.net import free_port
from tests.peers.sink import RecordingSink

from .helpers import RawClient, example_config, make_message, split_received


def relay_env(sink: RecordingSink, listen_port: int, state_dir: str) -> dict[str, str]:
    return {
        "MAILPIPE_HOSTNAME": "gw.test",
        "MAILPIPE_LISTEN": f"127.0.0.1:{listen_port}",
        "MAILPIPE_STATE_DIR": state_dir,
        "SMARTHOST": sink.host,
        "SMARTHOST_PORT": str(sink.port),
        "SMARTHOST_TLS": "none",
    }


def test_smtplib_and_swaks_deliver_exact_bytes_plus_received(mailpipe_factory, workdir):
    """The example relay config: what the client sent arrives byte for byte, after one Received header."""
    with RecordingSink("127.0.1.30") as sink:
        port = free_port()
        gw = mailpipe_factory(example_config("relay-to-smarthost.yaml"),
                              env=relay_env(sink, port, str(workdir / "state")))
        gw.config["listen"] = [f"127.0.0.1:{port}"]
        with gw:
            original = make_message("exact bytes", "line one\nline two\n.leading dot\n")
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
                code, caps = client.ehlo("client.test")
                assert code == 250
                for ext in (b"SIZE", b"8BITMIME", b"PIPELINING", b"SMTPUTF8"):
                    assert ext in caps
                refused = client.sendmail("alice@example.org", ["bob@example.net"], original)
                assert refused == {}
            swaks = subprocess.run(
                ["swaks", "--server", "127.0.0.1", "--port", str(port), "--from", "carol@example.org",
                 "--to", "dave@example.net", "--header", "Subject: via swaks", "--body", "from swaks"],
                capture_output=True, text=True, timeout=60,
            )
            assert swaks.returncode == 0, swaks.stdout + swaks.stderr
            assert "250 2.0.0 Ok: queued as" in swaks.stdout
            got = sink.wait_for(2)
        first = next(m for m in got if m.mail_from == "alice@example.org")
        assert first.rcpt_tos == ["bob@example.net"]
        received, rest = split_received(first.data)
        assert rest == original
        assert b"by gw.test (mailpipe) with ESMTP id " in received
        assert b"from client.test ([127.0.0.1])" in received
        assert b"for <bob@example.net>" in received
        second = next(m for m in got if m.mail_from == "carol@example.org")
        parsed = email.message_from_bytes(second.data)
        assert parsed["Subject"] == "via swaks"
        assert len(parsed.get_all("Received")) == 1
        assert first.helo == "gw.test"


def test_size_limit_at_mail_and_at_end_of_data(mailpipe_factory):
    with RecordingSink("127.0.1.31") as sink:
        gw = mailpipe_factory({
            "hostname": "gw.test", "intake": {"max_message_size": "2K"},
            "chain": [{"smarthost": {"server": sink.host, "port": sink.port, "tls": "none"}}],
        })
        with gw:
            host, port = gw.address
            c = RawClient(host, port)
            assert c.cmd("EHLO client.test")[1].count("SIZE 2048") == 1
            assert c.cmd("MAIL FROM:<a@example.org> SIZE=5000")[0] == 552
            assert c.cmd("MAIL FROM:<a@example.org>")[0] == 250
            assert c.cmd("RCPT TO:<b@example.net>")[0] == 250
            assert c.cmd("DATA")[0] == 354
            c.send(b"Subject: big\r\n\r\n" + (b"x" * 70 + b"\r\n") * 60 + b".\r\n")
            assert c.reply()[0] == 552
            c.close()
            rows = gw.cli_json("queue", "list")
            assert rows == []
