"""Collection rules against a real Dovecot mailbox: multidrop, leave on server with UIDL across runs,
delete_after, oversize, loops, unparseable messages, STLS and APOP."""

from __future__ import annotations

import json
from pathlib import Path

from tests.peers.certs import TestPKI
from tests.peers.dovecot import DovecotPeer
from tests.peers.mailpipe import run_pipeline
from tests.peers.net import wait_until
from tests.peers.sink import RecordingSink

from .conftest import INTERNAL, account, collect_cli, events, gateway_config, mailbox_files, message, write

MULTIDROP = {"headers": ["Delivered-To", "X-Original-To", "To", "Cc"], "domains": [INTERNAL],
             "default": f"postmaster@{INTERNAL}"}


def test_multidrop_distributes_by_header(workdir: Path, dovecot_peer: DovecotPeer, pki: TestPKI,
                                         internal: RecordingSink, mailpipe_factory) -> None:
    cases = {
        # To and Cc of the office's domains, one twice in other case, one outside: folded, filtered
        "headers": message(1, to=f"Bob <bob@{INTERNAL}>, someone@elsewhere.test",
                           extra=f"Cc: alice@{INTERNAL}, BOB@{INTERNAL.upper()}, dave@example.test\r\n"),
        # the ISP's envelope header says for whom this copy is: only that one, not the To/Cc list
        "envelope": message(2, to=f"bob@{INTERNAL}, alice@{INTERNAL}", extra=f"Delivered-To: alice@{INTERNAL}\r\n"),
        # nothing of the office's domains: the default
        "nothing": message(3, to="list@lists.test"),
    }
    for data in cases.values():
        dovecot_peer.add_message("alice", data)
    config = gateway_config(workdir, internal.port, [account(dovecot_peer, pki, deliver_to=None,
                                                             distribute=MULTIDROP)])
    del config["accounts"][0]["collect"]["deliver_to"]
    with mailpipe_factory(config):
        got = internal.wait_for(3)
    by_subject = {m.data.split(b"Subject: ", 1)[1].split(b"\r\n", 1)[0].decode(): sorted(m.rcpt_tos) for m in got}
    assert by_subject == {
        "collected 1": sorted([f"bob@{INTERNAL}", f"alice@{INTERNAL}"]),
        "collected 2": [f"alice@{INTERNAL}"],
        "collected 3": [f"postmaster@{INTERNAL}"],
    }


def test_leave_on_server_remembers_by_uidl_across_restarts(workdir: Path, dovecot_peer: DovecotPeer, pki: TestPKI,
                                                           internal: RecordingSink, mailpipe_factory) -> None:
    for n in range(3):
        dovecot_peer.add_message("alice", message(n))
    config = gateway_config(workdir, internal.port, [account(dovecot_peer, pki, leave_on_server=True, every="1s")])
    gw = mailpipe_factory(config)
    with gw:
        internal.wait_for(3)
        wait_until(lambda: gw.log_text().count("collect.message") >= 3, 10, "three collected")
    with gw:  # a restart: the marks are in the queue, nothing is collected again
        wait_until(lambda: "gateway.started" in gw.log_text(), 10, "restart")
        dovecot_peer.add_message("alice", message(99))
        internal.wait_for(4)
        wait_until(lambda: gw.log_text().count("collect.message") >= 4, 10, "the new one collected")
    status, reports = collect_cli(gw.config_path)
    assert reports[0]["collected"] == [] and reports[0]["kept"] == 4
    assert len(internal.messages) == 4
    assert len(mailbox_files(dovecot_peer, "alice")) == 4  # all still on the server


def test_delete_after_removes_old_ones_only(workdir: Path, dovecot_peer: DovecotPeer, pki: TestPKI,
                                            internal: RecordingSink) -> None:
    dovecot_peer.add_message("alice", message(1))
    path = write(workdir, gateway_config(workdir, internal.port, [
        account(dovecot_peer, pki, leave_on_server=True, delete_after="2s")]))
    _, reports = collect_cli(path)
    assert len(reports[0]["collected"]) == 1 and reports[0]["deleted"] == 0
    dovecot_peer.add_message("alice", message(2))
    _, reports = collect_cli(path)
    assert len(reports[0]["collected"]) == 1

    def first_gone() -> bool:
        _, again = collect_cli(path)
        return again[0]["deleted"] >= 1

    wait_until(first_gone, 30, "the first message removed after delete_after")
    wait_until(lambda: len(mailbox_files(dovecot_peer, "alice")) == 0 or first_gone(), 30, "both removed")
    assert mailbox_files(dovecot_peer, "alice") == []


def test_oversize_stays_on_server_with_one_event(workdir: Path, dovecot_peer: DovecotPeer, pki: TestPKI,
                                                 internal: RecordingSink) -> None:
    dovecot_peer.add_message("alice", message(1, body="x" * 70 + "\r\n" * 1 + ("y" * 70 + "\r\n") * 100))
    dovecot_peer.add_message("alice", message(2))
    path = write(workdir, gateway_config(workdir, internal.port, [account(dovecot_peer, pki, max_size="4K")]))
    status, reports = collect_cli(path)
    assert status == 0
    assert reports[0]["too_large"] == 1 and len(reports[0]["collected"]) == 1
    assert len(mailbox_files(dovecot_peer, "alice")) == 1
    (event,) = events(path, "collect.too_large")
    assert event["level"] == "warning" and "stays on the server" in event["text"]


def test_loop_is_held_and_unparseable_is_collected_as_is(workdir: Path, dovecot_peer: DovecotPeer, pki: TestPKI,
                                                         internal: RecordingSink) -> None:
    dovecot_peer.add_message("alice", message(1, extra="X-Loop: alice@isp.test\r\n"))
    hops = "".join(f"Received: from hop{n}.test by hop{n + 1}.test; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
                   for n in range(40))
    dovecot_peer.add_message("alice", (hops + "Subject: many hops\r\n\r\nbody\r\n").encode())
    garbage = b"\xff\xfe\x00 not a header at all\r\n\x01\x02:::\r\n\r\n\xc3\x28 body\r\n"
    dovecot_peer.add_message("alice", garbage)
    path = write(workdir, gateway_config(workdir, internal.port, [account(dovecot_peer, pki)]))
    status, reports = collect_cli(path)
    assert status == 0 and len(reports[0]["collected"]) == 3 and reports[0]["deleted"] == 3
    loops = events(path, "collect.loop")
    assert len(loops) == 2 and "X-Loop" in loops[0]["text"] and "max_hops" in loops[1]["text"]
    held = json.loads(run_pipeline(path, "queue", "list", "--state", "held", "--json").stdout)
    assert len(held) == 2
    pending = json.loads(run_pipeline(path, "queue", "list", "--state", "pending", "--json").stdout)
    assert len(pending) == 1
    shown = run_pipeline(path, "queue", "show", pending[0]["id"], "--json").stdout
    assert f"alice@{INTERNAL}" in shown


def test_stls_and_apop(workdir: Path, dovecot_peer: DovecotPeer, pki: TestPKI, internal: RecordingSink) -> None:
    dovecot_peer.add_message("bob", message(1))
    acc = account(dovecot_peer, pki, "bob", tls="starttls")
    acc["pop3"]["apop"] = True
    path = write(workdir, gateway_config(workdir, internal.port, [acc]))
    status, reports = collect_cli(path)
    assert status == 0 and len(reports[0]["collected"]) == 1
    (login,) = dovecot_peer.pop3_logins()
    assert login.user == "bob" and login.method == "APOP" and login.tls
