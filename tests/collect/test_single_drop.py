"""Single drop: one ISP mailbox (real Dovecot POP3) collected into one internal address, through the queue,
delivered to the internal server; a message is removed from the POP3 server only once it is queued."""

from __future__ import annotations

from pathlib import Path

from tests.peers.certs import TestPKI
from tests.peers.dovecot import DovecotPeer
from tests.peers.sink import RecordingSink

from .conftest import INTERNAL, account, collect_cli, events, gateway_config, mailbox_files, message, write


def test_collect_queues_and_removes_then_serve_delivers(workdir: Path, dovecot_peer: DovecotPeer, pki: TestPKI,
                                                        internal: RecordingSink, mailpipe_factory) -> None:
    sent = [message(n) for n in range(3)]
    for data in sent:
        dovecot_peer.add_message("alice", data)
    config = gateway_config(workdir, internal.port, [account(dovecot_peer, pki)])
    path = write(workdir, config)

    status, reports = collect_cli(path)
    assert status == 0, reports
    (report,) = reports
    assert len(report["collected"]) == 3 and report["deleted"] == 3 and report["error"] is None
    assert mailbox_files(dovecot_peer, "alice") == []  # deleted only after QUIT, after the commits

    gw = mailpipe_factory({**config, "accounts": config["accounts"]})
    with gw:
        got = internal.wait_for(3)
    assert sorted(m.rcpt_tos[0] for m in got) == [f"alice@{INTERNAL}"] * 3
    assert {m.mail_from for m in got} == {"carol@outside.test"}  # Return-Path became the envelope sender
    for m in got:
        first = m.data.split(b"\r\n", 4)
        assert first[0].startswith(b"Received: from 127.0.1.110") or b"with POP3S" in m.data.split(b"\r\n\r\n")[0]
        head = m.data.split(b"\r\n\r\n", 1)[0]
        assert b"by gw.corp.test (mailpipe) with POP3S id" in head and b"(mailbox alice@isp.test)" in head
        assert b"X-Loop: alice@isp.test" in head
        assert any(m.data.endswith(data.split(b"\r\n\r\n", 1)[1]) for data in sent)
    kinds = [e["kind"] for e in events(path, "collect")]
    assert kinds.count("collect.message") == 3 and "collect.done" in kinds


def test_dry_run_lists_and_changes_nothing(workdir: Path, dovecot_peer: DovecotPeer, pki: TestPKI,
                                           internal: RecordingSink) -> None:
    dovecot_peer.add_message("alice", message(1))
    dovecot_peer.add_message("alice", message(2, to=f"bob@{INTERNAL}"))
    path = write(workdir, gateway_config(workdir, internal.port, [account(dovecot_peer, pki)]))
    status, reports = collect_cli(path, "alice@isp.test", "--dry-run")
    assert status == 0, reports
    rows = reports[0]["messages"]
    assert [r["action"] for r in rows] == ["collect", "collect"]
    assert rows[0]["summary"]["subject"] == "collected 1" and rows[0]["recipients"] == [f"alice@{INTERNAL}"]
    assert len(mailbox_files(dovecot_peer, "alice")) == 2
    status, reports = collect_cli(path)
    assert len(reports[0]["collected"]) == 2
