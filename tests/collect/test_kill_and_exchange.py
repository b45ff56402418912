"""The promise under a crash (SIGKILL during a collection of 200 messages: none lost, none queued twice) and the
Exchange connection of examples/office-gateway.yaml (internal server down only delays; mail for the office's
domains never leaves through the ISP)."""

from __future__ import annotations

import json
import re
import smtplib
from pathlib import Path

import pytest
import yaml

from tests.peers.certs import TestPKI
from tests.peers.dovecot import DovecotPeer
from tests.peers.net import free_port, wait_until
from tests.peers.sink import RecordingSink

from .conftest import INTERNAL, account, gateway_config, mailbox_files, message

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "office-gateway.yaml"
MESSAGE_ID = re.compile(rb"^Message-ID: (<[^>]+>)", re.MULTILINE | re.IGNORECASE)


@pytest.mark.timeout(240)
def test_sigkill_during_a_collection_of_200(workdir: Path, dovecot_peer: DovecotPeer, pki: TestPKI,
                                            mailpipe_factory) -> None:
    total = 200
    for n in range(total):
        dovecot_peer.add_message("alice", message(n, body=f"message {n}\r\n" + ("z" * 70 + "\r\n") * 30))
    with RecordingSink("127.0.0.1") as internal:
        internal.behaviour.mail = "421 4.3.2 down for maintenance"  # nothing is delivered while collecting
        gw = mailpipe_factory(gateway_config(workdir, internal.port, [account(dovecot_peer, pki, every="1s")],
                                             retry="1h"))
        gw.start()
        wait_until(lambda: gw.log_text().count("collect.message") >= 30, 60, "30 messages collected")
        gw.kill()
        at_kill = gw.log_text().count("collect.message")
        left = len(mailbox_files(dovecot_peer, "alice"))
        assert at_kill < total and left == total, (at_kill, left)  # killed mid-way, before its QUIT

        with gw:  # restart: the rest is collected; what was queued before is only deleted
            wait_until(lambda: not mailbox_files(dovecot_peer, "alice"), 120, "the mailbox emptied")
            internal.behaviour.mail = None  # the internal server is back
            gw.cli("queue", "retry", "--all")
            internal.wait_for(total, timeout=120)
            wait_until(lambda: gw.cli_json("queue", "list") == [], 60, "the queue drained")
            ids = [MESSAGE_ID.search(m.data).group(1) for m in internal.messages]
    assert len(ids) == total and len(set(ids)) == total  # 0 lost, 0 collected twice
    print(f"killed after {at_kill} of {total} collected; after the restart {total} delivered, each once")


def office_config(workdir: Path, dovecot: DovecotPeer, pki: TestPKI, internal_port: int, isp_port: int) -> dict:
    """examples/office-gateway.yaml as it is, with the test peers put in through its environment variables."""
    config = yaml.safe_load(EXAMPLE.read_text())
    config["state_dir"] = str(workdir / "state")
    config["listen"] = [f"127.0.0.1:{free_port()}"]
    config["accounts"] = [account(dovecot, pki, "alice", distribute=config["accounts"][0]["collect"]["distribute"],
                                  deliver_to=None)]
    del config["accounts"][0]["collect"]["deliver_to"]
    config["chain"][0]["smarthost"].update(server=f"127.0.0.1:{internal_port}", tls="none")
    config["chain"][1]["smarthost"].update(server=f"127.0.0.1:{isp_port}", tls="none", allow_plaintext_auth=True)
    return config


def test_office_gateway_internal_down_only_delays(workdir: Path, dovecot_peer: DovecotPeer, pki: TestPKI,
                                                  mailpipe_factory) -> None:
    env = {"OFFICE_DOMAIN": INTERNAL, "ISP_PASSWORD": "isp-secret", "ISP_USERNAME": "office",
           "ALICE_PASSWORD": "x", "BOB_PASSWORD": "x"}
    dovecot_peer.add_message("alice", message(1, to=f"bob@{INTERNAL}"))
    with RecordingSink("127.0.0.1", auth={"office": "isp-secret"}) as isp, RecordingSink("127.0.0.1") as internal:
        internal.behaviour.mail = "421 4.3.2 down for maintenance"
        gw = mailpipe_factory(office_config(workdir, dovecot_peer, pki, internal.port, isp.port), env=env)
        with gw:
            wait_until(lambda: not mailbox_files(dovecot_peer, "alice"), 30, "the mailbox collected")
            host, port = gw.address
            with smtplib.SMTP(host, port) as client:  # from the internal server: one out, one for a colleague
                client.sendmail(f"alice@{INTERNAL}", ["friend@outside.test"], message(2, to="friend@outside.test"))
                client.sendmail(f"alice@{INTERNAL}", [f"bob@{INTERNAL}"], message(3, to=f"bob@{INTERNAL}"))
            isp.wait_for(1)
            wait_until(lambda: len([m for m in gw.cli_json("queue", "list") if m["recipients"].get("deferred")]) == 2,
                       30, "both messages for bob deferred while the internal server is down")
            internal.behaviour.mail = None  # the internal server is back
            gw.cli("queue", "retry", "--all")
            got = internal.wait_for(2)
            wait_until(lambda: gw.cli_json("queue", "list") == [], 30, "the queue drained")
        assert sorted(r for m in got for r in m.rcpt_tos) == [f"bob@{INTERNAL}"] * 2
        assert [r for m in isp.messages for r in m.rcpt_tos] == ["friend@outside.test"]  # never bob's mail
        assert all(m.auth_login == "office" for m in isp.messages)
    log = json.loads(gw.cli("log", "--json").stdout)
    assert {a["route"].split(":")[0] for a in log if a["recipient"].startswith("bob@")} <= {"internal", "smarthost"}
