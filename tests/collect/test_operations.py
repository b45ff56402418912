"""Operations: the console's Internet Mail Accounts page ("collect now"), the metrics of collected mail,
and the pure rules of distribution (no server needed)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from mailpipe.core.collect import distribute
from mailpipe.core.intake.auth import hash_password
from mailpipe.core.settings import CollectSettings
from tests.peers.certs import TestPKI
from tests.peers.dovecot import DovecotPeer
from tests.peers.net import free_port, wait_until
from tests.peers.sink import RecordingSink

from .conftest import account, gateway_config, mailbox_files, message

USER, PASSWORD = "admin", "console-secret"


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def test_console_page_collect_now_and_metrics(workdir: Path, dovecot_peer: DovecotPeer, pki: TestPKI,
                                              internal: RecordingSink, mailpipe_factory) -> None:
    console, metrics = free_port(), free_port()
    config = gateway_config(workdir, internal.port, [account(dovecot_peer, pki, every="1h")])
    config["chain"] += [{"console": {"listen": f"127.0.0.1:{console}",
                                     "users": [{"username": USER, "password_hash": hash_password(PASSWORD)}]}},
                        {"metrics": {"listen": f"127.0.0.1:{metrics}"}}]
    dovecot_peer.add_message("alice", message(1))
    with mailpipe_factory(config) as gw, httpx.Client(base_url=f"http://127.0.0.1:{console}") as client:
        internal.wait_for(1)  # the first collection runs at start
        page = client.get("/login")
        client.post("/login", data={"csrf": csrf_of(page.text), "username": USER, "password": PASSWORD})
        page = client.get("/accounts")
        assert page.status_code == 200 and "alice@isp.test" in page.text and "every 1h" in page.text
        assert "1 last time, 1 since start" in page.text and "collect.message" in page.text

        dovecot_peer.add_message("alice", message(2))  # the next timed run is an hour away: ask for one now
        done = client.post("/accounts/collect", data={"csrf": csrf_of(page.text), "account": "alice@isp.test"})
        assert done.status_code == 303
        internal.wait_for(2)
        wait_until(lambda: not mailbox_files(dovecot_peer, "alice"), 10, "the mailbox emptied")
        forged = client.post("/accounts/collect", data={"csrf": "forged"})
        assert forged.status_code == 403

        def scraped() -> str:
            return httpx.get(f"http://127.0.0.1:{metrics}/metrics").text

        wait_until(lambda: 'mailpipe_collected_messages_total{account="alice@isp.test"} 2.0' in scraped(), 10,
                   "two collected messages counted")
        assert "mailpipe_messages_accepted_total 2.0" in scraped()
    assert "console: collect now (alice@isp.test) by admin" in gw.log_text()


def header(text: str):  # noqa: ANN201
    return distribute.read_header(text.replace("\n", "\r\n").encode())


def test_distribution_rules() -> None:
    multi = CollectSettings.model_validate({"distribute": {"domains": ["Corp.Test"], "default": "pm@corp.test"}})
    h = header("To: a@corp.test, b@other.test\nCc: A@CORP.TEST, c@corp.test\n\nbody\n")
    assert distribute.recipients(multi, h) == ["a@corp.test", "c@corp.test"]
    h = header("Delivered-To: office@isp.test\nX-Original-To: c@corp.test\nTo: a@corp.test\n\n")
    assert distribute.recipients(multi, h) == ["c@corp.test"]  # the envelope header wins over To/Cc
    assert distribute.recipients(multi, header("To: x@else.test\n\n")) == ["pm@corp.test"]
    assert distribute.recipients(multi, None) == ["pm@corp.test"]
    single = CollectSettings.model_validate({"deliver_to": "alice@corp.test"})
    assert distribute.recipients(single, header("To: a@corp.test\n\n")) == ["alice@corp.test"]
    assert distribute.envelope_sender(header("Return-Path: <s@x.test>\n\n")) == "s@x.test"
    assert distribute.envelope_sender(header("Return-Path: <>\n\n")) == ""
    assert distribute.envelope_sender(header("Return-Path: <bad address@x>\n\n")) == ""
    own = header("Received: from p ([1.2.3.4])\n\tby gw.test (mailpipe) with POP3S id X\n\t(mailbox a@isp.test);\n"
                 "\tMon, 1 Jan 2024 00:00:00 +0000\n\n")
    assert distribute.loop_reason(own, mailbox="a@isp.test", hostname="gw.test", max_hops=30)
    assert distribute.loop_reason(own, mailbox="b@isp.test", hostname="gw.test", max_hops=30) is None
    assert distribute.loop_reason(header("X-Loop: A@isp.test\n\n"), mailbox="a@isp.test", hostname="gw.test",
                                  max_hops=30)
    assert distribute.loop_reason(header("Received: x\n" * 5 + "\n"), mailbox="a", hostname="g", max_hops=4)


def test_settings_refuse_what_cannot_work() -> None:
    for bad in ({}, {"deliver_to": "a@b.test", "distribute": {"domains": ["b.test"], "default": "p@b.test"}},
                {"deliver_to": "a@b.test", "delete_after": "7d"}, {"deliver_to": "nobody"}):
        with pytest.raises(ValidationError):
            CollectSettings.model_validate(bad)
