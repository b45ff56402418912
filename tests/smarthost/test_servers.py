"""Several smarthost servers in order, and every reply at every step mapped to an outcome per recipient."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.peers.badserver import BadServer
from tests.peers.certs import TestPKI
from tests.peers.harness import Harness
from tests.peers.net import free_port
from tests.peers.sink import RecordingSink

from .helpers import smarthost_config


def run_one(workdir, smarthost: dict, recipients: list[str]):
    """Queue one message, deliver it once; return (states, attempts by recipient)."""

    async def scenario():
        async with Harness(workdir, smarthost_config(workdir, smarthost)) as h:
            mid = await h.submit("alice@example.org", recipients)
            await h.deliver()
            return await h.states(mid), await h.last_attempts(mid)

    return asyncio.run(scenario())


def test_next_server_when_one_is_unreachable_or_answers_4xx(workdir: Path) -> None:
    """Refused connection, then 421 at the greeting, then a working server: delivered by the third."""
    dead = free_port("127.0.1.51")  # nothing listens there
    with BadServer("greet_then_close", "127.0.1.52", greeting="421 4.3.2 Service not available, closing") as busy, \
            RecordingSink("127.0.1.53") as good:
        states, attempts = run_one(workdir, {
            "server": [f"127.0.1.51:{dead}", f"{busy.host}:{busy.port}", f"{good.host}:{good.port}"],
            "tls": "none"}, ["r@remote.test"])
        assert states == {"r@remote.test": "delivered"}
        assert busy.connections == 1
        assert len(good.wait_for(1)) == 1
    assert attempts["r@remote.test"].remote_host == f"127.0.1.53:{good.port}"


def test_all_servers_failing_is_temporary_and_names_each(workdir: Path) -> None:
    """Nothing works, including a 554 greeting: the mail stays queued; the reply says what each did."""
    dead = free_port("127.0.1.51")  # nothing listens there
    with BadServer("greet_then_close", "127.0.1.52", greeting="554 5.7.1 go away") as refusing:
        states, attempts = run_one(workdir, {
            "server": [f"127.0.1.51:{dead}", f"{refusing.host}:{refusing.port}"], "tls": "none"},
            ["r@remote.test"])
    assert states == {"r@remote.test": "deferred"}
    a = attempts["r@remote.test"]
    assert (a.code, a.enhanced) == (451, "4.4.1")
    assert f"127.0.1.51:{dead}: 451 4.4.1 cannot connect" in a.text
    assert f"127.0.1.52:{refusing.port}: 554 5.7.1" in a.text and "go away" in a.text


def test_silent_server_times_out(workdir: Path) -> None:
    """A server that greets and then never answers EHLO: temporary, after ``timeout``."""
    with BadServer("hang_after_greeting", "127.0.1.54") as hung:
        states, attempts = run_one(workdir, {"server": f"{hung.host}:{hung.port}", "tls": "none",
                                             "timeout": "1s"}, ["r@remote.test"])
    assert states == {"r@remote.test": "deferred"}
    assert "timed out" in attempts["r@remote.test"].text


def test_starttls_required_but_not_offered(workdir: Path) -> None:
    """tls: starttls against a server without STARTTLS: temporary, never sent in clear."""
    with RecordingSink("127.0.1.55") as plain:
        states, attempts = run_one(workdir, {"server": f"{plain.host}:{plain.port}", "tls": "starttls"},
                                   ["r@remote.test"])
        assert plain.messages == []
    assert states == {"r@remote.test": "deferred"}
    assert "does not offer STARTTLS" in attempts["r@remote.test"].text


def test_untrusted_certificate_is_temporary(workdir: Path, pki: TestPKI) -> None:
    """tls: implicit with the system CAs against a server whose CA is not trusted: 4.7.5, kept queued."""
    import ssl

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(pki.cert_file, pki.key_file)
    sink = RecordingSink("127.0.0.1")
    sink.controller.ssl_context = ctx  # implicit TLS (465-style)
    with sink:
        states, attempts = run_one(workdir, {"server": f"{sink.host}:{sink.port}", "tls": "implicit"},
                                   ["r@remote.test"])
    assert states == {"r@remote.test": "deferred"}
    assert attempts["r@remote.test"].enhanced == "4.7.5", attempts["r@remote.test"].text


@pytest.mark.parametrize(("stage", "reply", "expected"), [
    ("rcpt", {"bad@remote.test": "550 5.1.1 no such user", "busy@remote.test": "450 4.2.0 mailbox busy"},
     {"ok@remote.test": "delivered", "bad@remote.test": "failed", "busy@remote.test": "deferred"}),
    ("mail", "553 5.1.8 sender rejected",
     {"ok@remote.test": "failed", "bad@remote.test": "failed", "busy@remote.test": "failed"}),
    ("mail", "451 4.3.0 try later",
     {"ok@remote.test": "deferred", "bad@remote.test": "deferred", "busy@remote.test": "deferred"}),
    ("data", "554 5.6.0 content rejected",
     {"ok@remote.test": "failed", "bad@remote.test": "failed", "busy@remote.test": "failed"}),
    ("data", "452 4.3.1 out of storage",
     {"ok@remote.test": "deferred", "bad@remote.test": "deferred", "busy@remote.test": "deferred"}),
])
def test_replies_to_mail_rcpt_data_map_per_recipient(
        workdir: Path, stage: str, reply: str | dict[str, str], expected: dict[str, str],
) -> None:
    """Replies to MAIL, RCPT and DATA become per-recipient outcomes: 5xx failed, 4xx deferred."""
    with RecordingSink("127.0.1.56") as sink:
        if stage == "rcpt":
            sink.behaviour.rcpt.update(reply)
        else:
            setattr(sink.behaviour, stage, reply)
        states, attempts = run_one(workdir, {"server": f"{sink.host}:{sink.port}", "tls": "none"},
                                   list(expected))
    assert states == expected
    if stage == "rcpt":
        assert attempts["bad@remote.test"].code == 550 and attempts["busy@remote.test"].code == 450
    else:
        assert {a.code for a in attempts.values()} == {int(reply[:3])}
