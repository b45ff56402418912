"""Promises of docs/smarthost.md checked through ``pipeline serve``, a recording sink and the CLI.

* ``auth.login_failure_pause``: a rejected login is not tried again during the pause; one
  ``smarthost.login_failed``; once the login works again, ``smarthost.login_ok`` and delivery;
* ``verify: false`` delivers to a server whose certificate is not trusted, ``verify: true`` does not;
* a list of servers: the next one is used when one fails TLS or EHLO;
* a reused connection gets ``RSET`` before its next transaction.
"""

from __future__ import annotations

import contextlib
import signal
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.peers.certs import TestPKI, make_pki
from tests.peers.mailpipe import MailpipeProcess
from tests.peers.net import wait_until
from tests.peers.sink import RecordingSink

from .helpers import events, show, submit, wait_log, wait_states

PAUSE = 3.0
USER = "gw-account"


def server_tls(pki: TestPKI) -> ssl.SSLContext:
    """A server context with the certificate of ``pki`` (for the sink's STARTTLS)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(pki.cert_file), str(pki.key_file))
    return ctx


class CountingLogins:
    """A sink authenticator that accepts ``password`` for USER and notes every attempt (time, accepted)."""

    def __init__(self, password: str) -> None:
        self.password = password
        self.attempts: list[tuple[float, bool]] = []
        self._lock = threading.Lock()

    def __call__(self, server, session, envelope, mechanism, auth_data) -> AuthResult:  # noqa: ANN001
        ok = (isinstance(auth_data, LoginPassword) and auth_data.login.decode() == USER
              and auth_data.password.decode() == self.password)
        with self._lock:
            self.attempts.append((time.monotonic(), ok))
        return AuthResult(success=True, auth_data=USER) if ok else AuthResult(success=False, handled=False)


@contextlib.contextmanager
def first_login_tried(mailpipe_factory: Callable[..., MailpipeProcess], logins: CountingLogins, password: str,
                      subject: str) -> Iterator[tuple[RecordingSink, MailpipeProcess, str]]:
    """A sink checking logins with ``logins``, a gateway logging in to it with ``password`` and one message to
    bob@remote.test queued: yields (sink, gateway, queue id) once the first login was tried."""
    with RecordingSink("127.0.0.1", authenticator=logins) as sink:
        gw = mailpipe_factory(login_config(sink, password))
        with gw:
            queue_id = submit(gw, ["bob@remote.test"], subject)
            wait_until(lambda: len(logins.attempts) == 1, 20, "the first login")
            yield sink, gw, queue_id


def login_config(sink: RecordingSink, password: str) -> dict:
    return {
        "hostname": "gw.test",
        "chain": [
            {"smarthost": {"server": f"{sink.host}:{sink.port}", "tls": "none", "allow_plaintext_auth": True,
                           "auth": {"mode": "login", "mechanism": "plain", "username": USER, "password": password,
                                    "login_failure_pause": f"{PAUSE:.0f}s"}}},
            {"retry": {"every": "1s", "expire_after": "1d"}},
        ],
    }


def test_login_failure_pause_then_login_ok_when_the_server_accepts_again(mailpipe_factory):
    """Wrong password: one login_failed, no login during the pause though retries run every second;
    the ISP starts accepting the password: after the pause one login, login_ok, delivered."""
    logins = CountingLogins("the-isp-password")
    with first_login_tried(mailpipe_factory, logins, "what-the-gateway-has",
                           "waits for a login") as (sink, gw, queue_id):
        logins.password = "what-the-gateway-has"  # the ISP fixed the account on its side
        sink.wait_for(1, timeout=PAUSE + 20)
        shown = wait_states(gw, queue_id, {"bob@remote.test": "delivered"})
        failed, ok = events(gw, "smarthost.login_failed"), events(gw, "smarthost.login_ok")
    assert [accepted for _, accepted in logins.attempts] == [False, True]
    assert logins.attempts[1][0] - logins.attempts[0][0] >= PAUSE
    *deferred, delivered = shown["attempts"]
    assert len(deferred) >= 2  # retries ran during the pause without logging in
    for a in deferred:
        assert (a["outcome"], a["code"], a["enhanced"]) == ("temporary", 451, "4.7.8")
        assert a["text"].startswith(f"smarthost login as {USER} at {sink.host}:{sink.port} (PLAIN) failed: 535")
    assert delivered["outcome"] == "delivered"
    assert len(failed) == 1 and failed[0]["level"] == "error"
    assert f"the same login is not tried again for {PAUSE:.0f}s" in failed[0]["text"]
    assert [(e["text"], e["data"]) for e in ok] == [
        (f"smarthost login as {USER} works again", {"login": USER})]
    assert ok[0]["time"] > failed[0]["time"]
    assert sink.messages[0].auth_login == USER


def test_login_ok_after_the_password_is_fixed_by_sighup(mailpipe_factory):
    """Wrong password, one login_failed; the administrator fixes the file and sends SIGHUP:
    the mail is delivered and ``smarthost.login_ok`` says the login works again."""
    logins = CountingLogins("the-right-one")
    with first_login_tried(mailpipe_factory, logins, "a-typo",
                           "waits for the fix") as (sink, gw, queue_id):
        gw.write_config(login_config(sink, "the-right-one"))
        gw.proc.send_signal(signal.SIGHUP)
        sink.wait_for(1, timeout=PAUSE + 20)
        wait_states(gw, queue_id, {"bob@remote.test": "delivered"})
        wait_log(gw, "smarthost.login_ok: ")
        failed, ok = events(gw, "smarthost.login_failed"), events(gw, "smarthost.login_ok")
    assert [accepted for _, accepted in logins.attempts] == [False, True]
    assert len(failed) == 1
    assert [e["text"] for e in ok] == [f"smarthost login as {USER} works again"]
    assert "a-typo" not in gw.log_text() and "the-right-one" not in gw.log_text()


def test_reload_that_leaves_the_login_alone_keeps_the_pause(mailpipe_factory):
    """A SIGHUP that changes something else (``delivery.timeout``) does not cut the pause short:
    the rejected login is tried again only after ``login_failure_pause``, and reported once."""
    logins = CountingLogins("the-isp-password")
    with first_login_tried(mailpipe_factory, logins, "what-the-gateway-has",
                           "pause across a reload") as (sink, gw, queue_id):
        gw.write_config({**login_config(sink, "what-the-gateway-has"), "delivery": {"timeout": "20s"}})
        gw.proc.send_signal(signal.SIGHUP)
        wait_log(gw, "config.reloaded: ")
        wait_until(lambda: len(logins.attempts) == 2, PAUSE + 20, "the login after the pause")
        attempts = show(gw, queue_id)["attempts"]
        failed = events(gw, "smarthost.login_failed")
    # A slow machine may reach a third login (one more pause later) before the checks: every gap counts.
    times = [t for t, _ in logins.attempts]
    assert all(later - earlier >= PAUSE for earlier, later in zip(times, times[1:], strict=False))
    assert not any(accepted for _, accepted in logins.attempts)
    assert len(attempts) >= 3  # retries every second went on without logging in
    assert {(a["code"], a["enhanced"]) for a in attempts} == {(451, "4.7.8")}
    assert len(failed) == 1


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    """A CA nobody trusts, and a certificate from it for mail.other.test only (not 127.0.0.1)."""
    return make_pki(tmp_path_factory.mktemp("other-ca"), ("mail.other.test",))


@pytest.mark.parametrize(("verify", "trust", "delivered"), [
    (False, "system", True),    # neither chain nor name checked
    (True, "system", False),    # the chain is not trusted
    (True, "own-ca", False),    # the chain is trusted, the name does not match 127.0.0.1
])
def test_verify_false_is_the_only_way_to_an_untrusted_server(mailpipe_factory, other_ca, verify, trust, delivered):
    """STARTTLS to a server whose certificate is from an unknown CA and for another name."""
    with RecordingSink("127.0.0.1", tls_context=server_tls(other_ca)) as sink:
        smarthost = {"server": f"{sink.host}:{sink.port}", "tls": "starttls", "verify": verify}
        if trust == "own-ca":
            smarthost["ca_file"] = str(other_ca.ca_file)
        gw = mailpipe_factory({"hostname": "gw.test", "chain": [{"smarthost": smarthost},
                                                                {"retry": {"every": "1h"}}]})
        with gw:
            queue_id = submit(gw, ["bob@remote.test"], "over unverified tls")
            shown = wait_states(gw, queue_id, {"bob@remote.test": "delivered" if delivered else "deferred"})
    (attempt,) = shown["attempts"]
    if delivered:
        assert [(m.rcpt_tos, m.tls) for m in sink.messages] == [(["bob@remote.test"], True)]
        return
    assert (attempt["code"], attempt["enhanced"]) == (451, "4.7.5")
    assert attempt["text"].startswith(f"TLS certificate of {sink.host}:{sink.port} not trusted: ")
    assert sink.messages == []
    assert "MAIL" not in [v for s in sink.session_commands() for v in s]  # nothing sent, not even the sender


@pytest.mark.parametrize("fault", ["certificate not trusted", "no STARTTLS", "EHLO and HELO refused"])
def test_next_server_after_a_tls_or_ehlo_failure(mailpipe_factory, pki, tmp_path: Path, fault: str):
    """Two servers; the first fails at TLS or EHLO: the message is delivered through the second."""
    first_kwargs: dict = {}
    if fault == "certificate not trusted":
        first_kwargs["tls_context"] = server_tls(make_pki(tmp_path / "untrusted"))
    elif fault == "EHLO and HELO refused":
        first_kwargs["tls_context"] = server_tls(pki)
    with RecordingSink("127.0.1.73", **first_kwargs) as first, \
            RecordingSink("127.0.0.1", tls_context=server_tls(pki)) as second:  # a name in the certificate
        if fault == "EHLO and HELO refused":
            first.behaviour.ehlo = "554 5.7.1 gw.test is not welcome here"
        gw = mailpipe_factory({
            "hostname": "gw.test",
            "chain": [{"smarthost": {"server": [f"{first.host}:{first.port}", f"{second.host}:{second.port}"],
                                     "tls": "starttls", "ca_file": str(pki.ca_file)}},
                      {"retry": {"every": "1h"}}],
        })
        with gw:
            queue_id = submit(gw, ["bob@remote.test"], "second server")
            shown = wait_states(gw, queue_id, {"bob@remote.test": "delivered"})
        got = second.wait_for(1)
    assert [(m.rcpt_tos, m.tls) for m in got] == [(["bob@remote.test"], True)]
    assert first.messages == []
    first_verbs = [v for s in first.session_commands() for v in s]
    assert "MAIL" not in first_verbs
    assert first_verbs == (["EHLO", "HELO"] if fault == "EHLO and HELO refused" else ["EHLO"])
    (attempt,) = shown["attempts"]
    assert attempt["remote_host"] == f"{second.host}:{second.port}"


def test_reused_connection_gets_rset_between_messages(mailpipe_factory):
    """Two messages one after the other: one connection, RSET before the second transaction."""
    with RecordingSink("127.0.0.1") as sink:
        gw = mailpipe_factory({
            "hostname": "gw.test",
            "chain": [{"smarthost": {"server": f"{sink.host}:{sink.port}", "tls": "none", "idle_timeout": "1m"}}],
        })
        with gw:
            first = submit(gw, ["bob@remote.test"], "first of two")
            wait_states(gw, first, {"bob@remote.test": "delivered"})
            second = submit(gw, ["carol@remote.test"], "second of two")
            wait_states(gw, second, {"carol@remote.test": "delivered"})
            assert show(gw, second)["attempts"][0]["remote_host"] == f"{sink.host}:{sink.port}"
        assert [m.rcpt_tos for m in sink.wait_for(2)] == [["bob@remote.test"], ["carol@remote.test"]]
    assert sink.session_commands() == [["EHLO", "MAIL", "RCPT", "DATA", "RSET", "MAIL", "RCPT", "DATA"]]
