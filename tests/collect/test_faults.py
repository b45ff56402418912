"""What goes wrong at the ISP: a connection dropped in the middle of a RETR, a wrong password, a certificate
that does not verify, XOAUTH2 (with a POP3 server that speaks it), and a queue that cannot take mail."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.peers.certs import TestPKI
from tests.peers.dovecot import DovecotPeer
from tests.peers.net import wait_until
from tests.peers.sink import RecordingSink

from .conftest import account, collect_cli, events, gateway_config, mailbox_files, message, write
from .fakepop import FakePop3


def fake_account(server: FakePop3, **pop: object) -> dict:
    return {"address": "office@isp.test", "username": server.user, "password": server.password,
            "pop3": {"server": server.host, "port": server.port, "tls": "none", "allow_plaintext_auth": True, **pop},
            "collect": {"deliver_to": "alice@corp.test", "every": "1h"}}


def test_a_drop_mid_retr_loses_nothing_and_queues_nothing_twice(workdir: Path, internal: RecordingSink) -> None:
    mails = {f"uid-{n}": message(n, body="." * 50 + "\r\n.starts with a dot\r\n" + "x" * 4000 + "\r\n")
             for n in range(1, 4)}
    with FakePop3(dict(mails), drop_retr=2) as server:
        path = write(workdir, gateway_config(workdir, internal.port, [fake_account(server)]))
        status, reports = collect_cli(path, check=False)
        assert status == 1
        (first,) = reports
        assert len(first["collected"]) == 1 and first["deleted"] == 0  # no QUIT: the server deleted nothing
        assert "in the middle of RETR 2" in first["error"]
        assert server.deleted == []

        status, reports = collect_cli(path)
        (second,) = reports
        assert status == 0 and len(second["collected"]) == 2 and second["deleted"] == 3
        assert [r["action"] for r in second["messages"]] == ["delete", "collected", "collected"]
        assert sorted(server.deleted) == sorted(mails)
    ids = first["collected"] + second["collected"]
    assert len(set(ids)) == 3
    shown = [e for e in events(path, "collect.message")]
    assert len(shown) == 3


def test_wrong_password_fails_once_per_episode_and_recovers(workdir: Path, dovecot_peer: DovecotPeer,
                                                            pki: TestPKI, internal: RecordingSink,
                                                            mailpipe_factory) -> None:
    dovecot_peer.add_message("alice", message(1))
    bad = account(dovecot_peer, pki, every="1s")
    bad["password"] = "not-the-password"
    config = gateway_config(workdir, internal.port, [bad])
    status, reports = collect_cli(write(workdir, config), check=False)
    assert status == 1 and "POP3 login as alice" in reports[0]["error"] and "failed at PASS" in reports[0]["error"]
    assert "not-the-password" not in reports[0]["error"]

    gw = mailpipe_factory(config)
    with gw:
        path = gw.config_path
        wait_until(lambda: dovecot_peer.log_text().count("auth failed") + dovecot_peer.log_text().count(
            "Authentication failed") >= 3 or gw.log_text().count("collection failed again") >= 2, 30,
            "three failed logins")
        failed = events(path, "collect.login_failed")
        assert len(failed) == 2  # one from `pipeline collect`, one for the server's whole failure episode
        gw.write_config({**config, "accounts": [account(dovecot_peer, pki, every="1s")]})
        gw.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: len(internal.messages) == 1, 60, "the message collected after the fix")
        wait_until(lambda: len(events(path, "collect.recovered")) == 1, 20, "collect.recovered")
    assert mailbox_files(dovecot_peer, "alice") == []


def test_certificate_that_does_not_verify_sends_no_password(workdir: Path, dovecot_peer: DovecotPeer, pki: TestPKI,
                                                            internal: RecordingSink) -> None:
    dovecot_peer.add_message("alice", message(1))
    for tls in ("implicit", "starttls"):
        acc = account(dovecot_peer, pki, tls=tls)
        del acc["pop3"]["ca_file"]  # the system CAs do not know the test CA
        path = write(workdir, gateway_config(workdir, internal.port, [acc]))
        status, reports = collect_cli(path, check=False)
        assert status == 1
        assert "certificate verify failed" in reports[0]["error"].lower() or "CERTIFICATE_VERIFY_FAILED" in \
            reports[0]["error"], reports[0]["error"]
    assert dovecot_peer.pop3_logins() == []
    assert len(mailbox_files(dovecot_peer, "alice")) == 1
    failed = events(path, "collect.failed")
    assert failed and failed[-1]["level"] == "error"


def test_xoauth2_login(workdir: Path, internal: RecordingSink) -> None:
    with FakePop3({"u1": message(1)}, token="tok-123") as server:
        acc = fake_account(server, xoauth2=True, token_command=["echo", "tok-123"])
        path = write(workdir, gateway_config(workdir, internal.port, [acc]))
        status, reports = collect_cli(path)
        assert status == 0 and len(reports[0]["collected"]) == 1
        assert any(c.startswith("AUTH XOAUTH2 ") for c in server.commands)
        assert not any(c.startswith("USER") for c in server.commands)

        server.messages["u2"] = message(2)
        acc = fake_account(server, xoauth2=True, token_command=["echo", "stale"])
        path = write(workdir, gateway_config(workdir, internal.port, [acc]))
        status, reports = collect_cli(path, check=False)
        assert status == 1 and "failed at AUTH XOAUTH2" in reports[0]["error"] and "stale" not in reports[0]["error"]
        assert "u2" in server.messages


def test_a_message_larger_than_listed_is_left_and_the_rest_collected(workdir: Path, internal: RecordingSink) -> None:
    big = message(1, body=("b" * 70 + "\r\n") * 3000)  # about 216 KB, LIST says 100 bytes
    with FakePop3({"big": big, "small": message(2)}, listed_size=100) as server:
        acc = fake_account(server)
        acc["collect"]["max_size"] = "8K"
        path = write(workdir, gateway_config(workdir, internal.port, [acc]))
        status, reports = collect_cli(path)
        assert status == 0, reports
        assert reports[0]["too_large"] == 1 and len(reports[0]["collected"]) == 1
        assert server.deleted == ["small"] and "big" in server.messages
    assert len(events(path, "collect.too_large")) == 1
